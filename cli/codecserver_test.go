package cli

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/relink-dev/relink/app"
	"github.com/relink-dev/relink/keyring"
)

// lockedBuffer is a stdout the test reads while the command writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func payloadKeyEnv(t *testing.T) envconfig.Lookuper {
	t.Helper()
	k, err := keyring.Generate("cs1")
	require.NoError(t, err)
	return envconfig.MapLookuper(map[string]string{"RELINK_PAYLOAD_KEYS": k.Format(), "TEMPORAL_NAMESPACE": "relink"})
}

// It listens on this machine only: every other listen address is a usage
// error, before any setting is read or any port opened.
func TestCodecServerRefusesToListenBeyondThisMachine(t *testing.T) {
	for _, addr := range []string{":8888", "0.0.0.0:8888", "[::]:8888", "192.168.1.20:8888", "example.com:8888", "127.0.0.1"} {
		err := CodecServer(context.Background(), []string{"-listen", addr, "-ui-origin", "http://localhost:8233"}, payloadKeyEnv(t), &bytes.Buffer{})
		assert.ErrorIs(t, err, ErrUsage, addr)
		assert.ErrorContains(t, err, "is not a loopback address", addr)
	}
}

// The Web UI origin is required, exact, and never a wildcard.
func TestCodecServerNeedsTheWebUIsOrigin(t *testing.T) {
	err := CodecServer(context.Background(), nil, payloadKeyEnv(t), &bytes.Buffer{})
	assert.ErrorIs(t, err, ErrUsage)
	assert.ErrorContains(t, err, "-ui-origin is required")
	for _, origin := range []string{"*", "localhost:8233", "http://localhost:8233/", "http://localhost:8233/namespaces", "file:///ui"} {
		err := CodecServer(context.Background(), []string{"-ui-origin", origin}, payloadKeyEnv(t), &bytes.Buffer{})
		assert.ErrorContains(t, err, "no path and no wildcard", origin)
	}
	for _, origin := range []string{"http://u@localhost:8233", "http://localhost:8233?x=1", "http://localhost:8233#top"} {
		err := CodecServer(context.Background(), []string{"-ui-origin", origin}, payloadKeyEnv(t), &bytes.Buffer{})
		assert.ErrorContains(t, err, "must be scheme://host[:port]", origin)
	}
	// Plain http only from this machine: a page of that origin can decrypt.
	for origin, allowed := range map[string]bool{"http://temporal-ui.lan:8080": false, "http://192.168.1.20:8233": false,
		"https://temporal-ui.lan": true, "http://127.0.0.1": true, "http://[::1]:8233": true} {
		err := CodecServer(context.Background(), []string{"-ui-origin", origin, "-listen", "0.0.0.0:1"}, payloadKeyEnv(t), &bytes.Buffer{})
		if allowed {
			assert.ErrorContains(t, err, "loopback", "%s passes; the listen address is what is refused", origin)
		} else {
			assert.ErrorContains(t, err, "https, or http on this machine", origin)
		}
	}
	var stderr bytes.Buffer
	assert.Equal(t, 2, Run([]string{"codec-server", "-listen", "127.0.0.1:0"}, &bytes.Buffer{}, &stderr))
	assert.Contains(t, stderr.String(), "-ui-origin is required")
}

func TestCodecServerNeedsPayloadKeys(t *testing.T) {
	err := CodecServer(context.Background(), []string{"-listen", "127.0.0.1:0", "-ui-origin", "http://localhost:8233"},
		envconfig.MapLookuper(map[string]string{}), &bytes.Buffer{})
	assert.ErrorIs(t, err, app.ErrNoPayloadKeys)
}

var endpointLine = regexp.MustCompile(`namespace (\S+) at (http://\S+), for the Web UI at (.+)\n`)

// The command serves what it prints: the endpoint the temporal CLI's
// --codec-endpoint is given encodes and decodes, for the namespace of the
// Temporal connection's settings; it stops when its context ends.
func TestCodecServerServesTheEndpointItPrints(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- CodecServer(ctx, []string{"-listen", "127.0.0.1:0", "-ui-origin", "http://localhost:8233", "-ui-origin", "http://127.0.0.1:8233"},
			payloadKeyEnv(t), &stdout)
	}()
	var m []string
	require.Eventually(t, func() bool { m = endpointLine.FindStringSubmatch(stdout.String()); return m != nil },
		10*time.Second, 10*time.Millisecond, "the command says where it listens")
	assert.Equal(t, "relink", m[1], "TEMPORAL_NAMESPACE")
	assert.Equal(t, "http://localhost:8233, http://127.0.0.1:8233", m[3])
	assert.Contains(t, stdout.String(), "--codec-endpoint "+m[2])

	remote := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{Endpoint: m[2],
		ModifyRequest: func(r *http.Request) error { r.Header.Set("X-Namespace", "relink"); return nil }})
	in, err := converter.GetDefaultDataConverter().ToPayload("ctok_cli")
	require.NoError(t, err)
	sealed, err := remote.Encode([]*commonpb.Payload{in})
	require.NoError(t, err)
	back, err := remote.Decode(sealed)
	require.NoError(t, err)
	assert.True(t, proto.Equal(in, back[0]))

	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("the codec server did not stop with its context")
	}
	_, err = remote.Decode(sealed)
	assert.Error(t, err, "nothing listens any more")
}
