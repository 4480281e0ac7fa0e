package cli

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/relink-dev/relink/config"
)

// The embedded UI may use /codec without a key only while the dev stack
// has nothing to protect: the published key, on loopback.
func TestDevCodecOpensOnlyOnLoopbackWithThePublishedKey(t *testing.T) {
	for _, c := range []struct {
		gw   config.Gateway
		open bool
	}{
		{config.Gateway{APIKey: DevAPIKey, ListenAddr: "127.0.0.1:8080"}, true},
		{config.Gateway{APIKey: DevAPIKey, ListenAddr: "localhost:8080"}, true},
		{config.Gateway{APIKey: DevAPIKey, ListenAddr: "[::1]:8080"}, true},
		{config.Gateway{APIKey: DevAPIKey, ListenAddr: "0.0.0.0:8080"}, false},
		{config.Gateway{APIKey: DevAPIKey, ListenAddr: ":8080"}, false},
		{config.Gateway{APIKey: "my-own-key", ListenAddr: "127.0.0.1:8080"}, false},
		{config.Gateway{APIKey: DevAPIKey, APIKeys: []string{"another"}, ListenAddr: "127.0.0.1:8080"}, false},
	} {
		assert.Equal(t, c.open, DevCodecOpen(c.gw), "%+v", c.gw)
	}
}
