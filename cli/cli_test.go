package cli

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/relink-dev/relink/config"
)

func TestDevStackWarnsWhenItListensBeyondThisMachine(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:8080", "localhost:8080", "[::1]:8080"} {
		assert.Empty(t, DevExposureWarning(config.Gateway{ListenAddr: addr, APIKey: DevAPIKey}), addr)
	}
	for _, addr := range []string{":8080", "0.0.0.0:8080", "192.168.1.20:8080"} {
		w := DevExposureWarning(config.Gateway{ListenAddr: addr, APIKey: DevAPIKey})
		assert.Contains(t, w, "beyond this machine", addr)
		assert.Contains(t, w, "published API key", addr)
	}
	w := DevExposureWarning(config.Gateway{ListenAddr: ":8080", APIKey: "a-key-of-the-developers-own-choosing"})
	assert.Contains(t, w, "beyond this machine")
	assert.NotContains(t, w, "published API key")
}
