package devidp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
)

// fileConfig is the YAML form of Config. It is kept apart from Config so the
// library type carries live dependencies and the file format only data.
type fileConfig struct {
	Issuer                  string                    `yaml:"issuer"`
	Listen                  string                    `yaml:"listen"`
	InsecureAllowAnyAddress bool                      `yaml:"insecure_allow_any_address"`
	AccessTokenTTL          duration                  `yaml:"access_token_ttl"`
	IDTokenTTL              duration                  `yaml:"id_token_ttl"`
	RefreshTokenTTL         duration                  `yaml:"refresh_token_ttl"`
	Clients                 []fileClient              `yaml:"clients"`
	Users                   map[string]map[string]any `yaml:"users"`
}

type fileClient struct {
	ID                     string   `yaml:"id"`
	Secret                 string   `yaml:"secret"`
	RedirectURIs           []string `yaml:"redirect_uris"`
	PostLogoutRedirectURIs []string `yaml:"post_logout_redirect_uris"`
	BackchannelLogoutURI   string   `yaml:"backchannel_logout_uri"`
}

// duration is a YAML duration written with a unit, such as "30s" or "5m".
type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("line %d: %q is not a duration with a unit, such as \"30s\" or \"5m\"", n.Line, n.Value)
	}
	*d = duration(v)
	return nil
}

// LoadConfig reads a YAML configuration file. Unknown keys are errors and
// durations are strings such as "30s". It does not validate: [New] does.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("devidp: reading config: %w", err)
	}
	cfg, err := parseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("devidp: config %s: %w", path, err)
	}
	return cfg, nil
}

func parseConfig(data []byte) (Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var fc fileConfig
	if err := dec.Decode(&fc); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, errors.New("the file is empty")
		}
		return Config{}, err
	}
	if err := dec.Decode(new(any)); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("the file must hold a single YAML document")
	}
	cfg := Config{
		Issuer:                  fc.Issuer,
		Listen:                  fc.Listen,
		InsecureAllowAnyAddress: fc.InsecureAllowAnyAddress,
		AccessTokenTTL:          time.Duration(fc.AccessTokenTTL),
		IDTokenTTL:              time.Duration(fc.IDTokenTTL),
		RefreshTokenTTL:         time.Duration(fc.RefreshTokenTTL),
	}
	for _, c := range fc.Clients {
		cfg.Clients = append(cfg.Clients, Client(c))
	}
	if fc.Users != nil {
		cfg.Users = make(map[string]User, len(fc.Users))
		for name, claims := range fc.Users {
			cfg.Users[name] = User{Claims: claims}
		}
	}
	return cfg, nil
}
