package session

import (
	"strings"
	"testing"
	"time"
)

// A record leaves out the token type of bearer tokens and restores it when read; any
// other type is kept.
func TestRecordTokenType(t *testing.T) {
	keys, err := NewKeyRing(NewRandomKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"Bearer", "DPoP"} {
		s := &Session{Subject: "alice", ExpiresAt: time.Now().Add(time.Hour), key: NewRandomKey(),
			Token:     Token{AccessToken: "at", TokenType: typ},
			Audiences: map[string]Token{"aud=x": {AccessToken: "at2", TokenType: typ}}}
		b, err := encodeRecord(keys, recordKey("h"), s)
		if err != nil {
			t.Fatal(err)
		}
		_, sealed, _ := splitRecord(b)
		plain, err := Open(s.key, secretAAD(recordKey("h")), sealed)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(plain), `"tt"`); got != (typ != "Bearer") {
			t.Errorf("%s: record %s", typ, plain)
		}
		got, err := decodeRecord(keys, recordKey("h"), s.key, b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Token.TokenType != typ || got.Audiences["aud=x"].TokenType != typ {
			t.Errorf("%s: read back as %q and %q", typ, got.Token.TokenType, got.Audiences["aud=x"].TokenType)
		}
		if s.Token.TokenType != typ {
			t.Errorf("encoding changed the session's token type to %q", s.Token.TokenType)
		}
	}
}
