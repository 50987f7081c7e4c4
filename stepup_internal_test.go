package gatehouse

import (
	"maps"
	"testing"
)

func TestBearerChallenge(t *testing.T) {
	for _, tc := range []struct {
		values []string
		want   map[string]string
		ok     bool
	}{
		{[]string{`Bearer error="insufficient_user_authentication", acr_values="gold", max_age=5`},
			map[string]string{"error": "insufficient_user_authentication", "acr_values": "gold", "max_age": "5"}, true},
		// Another scheme first, in the same value and in another value; spaces around '='.
		{[]string{`Basic realm="x, y", Bearer error = "insufficient_user_authentication" , max_age=0`},
			map[string]string{"error": "insufficient_user_authentication", "max_age": "0"}, true},
		{[]string{`DPoP algs="ES256"`, `bearer ERROR="insufficient_user_authentication"`},
			map[string]string{"error": "insufficient_user_authentication"}, true},
		// Escapes inside a quoted string; a token68 challenge; an unterminated quote.
		{[]string{`Bearer error_description="say \"hi\"", error="x"`}, map[string]string{"error_description": `say "hi"`, "error": "x"}, true},
		{[]string{`Negotiate abc==, Bearer error="y"`}, nil, false},
		{[]string{`Bearer error="insufficient_user_authentication`}, map[string]string{}, true},
		{[]string{`Bearer`}, map[string]string{}, true},
		{[]string{``, `=,,"`}, nil, false},
	} {
		got, ok := bearerChallenge(tc.values)
		if ok != tc.ok || tc.want != nil && !maps.Equal(got, tc.want) {
			t.Errorf("%q: %v %v, want %v %v", tc.values, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzBearerChallenge(f *testing.F) {
	f.Add(`Bearer error="insufficient_user_authentication", acr_values="gold", max_age=5`)
	f.Add(`Basic realm="a\"b", Bearer x=y, z`)
	f.Fuzz(func(t *testing.T, v string) {
		params, _ := bearerChallenge([]string{v}) // terminates, never panics
		if _, ok := params["error"]; ok {
			_, _ = parseStepUp(params["acr_values"], params["max_age"], true)
		}
	})
}
