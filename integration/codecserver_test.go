package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/relink-dev/relink/activities/sandbox"
	"github.com/relink-dev/relink/cli"
	"github.com/relink-dev/relink/codec"
	"github.com/relink-dev/relink/workflows"
)

// startCodecServer runs `relink codec-server` with env as the operator's
// shell, on a free loopback port, until the test ends; it returns the
// endpoint the command prints.
func startCodecServer(t *testing.T, env map[string]string, uiOrigin string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- cli.CodecServer(ctx, []string{"-listen", "127.0.0.1:0", "-ui-origin", uiOrigin}, envconfig.MapLookuper(env), &stdout)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("relink codec-server did not stop")
		}
	})
	at := regexp.MustCompile(`--codec-endpoint (http://127\.0\.0\.1:\d+)\n`)
	var m []string
	deadline := time.After(10 * time.Second)
	for m == nil {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("relink codec-server exited before it said where it listens: %v", err)
		case <-deadline:
			t.Fatalf("relink codec-server did not say where it listens:\n%s", stdout.String())
		case <-time.After(10 * time.Millisecond):
		}
		m = at.FindStringSubmatch(stdout.String())
	}
	return m[1]
}

// An operator on `temporal server start-dev` or the compose file, with no
// gateway /codec to reach and no single sign-on, runs `relink codec-server`
// with the workers' payload keys: the temporal CLI (--codec-endpoint, the
// SDK's remote codec client) and the Web UI in their browser read a real
// repair's encrypted history in clear through it; a page on another origin
// does not, and a codec server with other keys cannot.
func TestOperatorsOwnCodecServerDecodesARepairsHistory(t *testing.T) {
	key := newKey(t, "op1")
	s := newStackWith(t, map[string]string{"RELINK_PAYLOAD_KEYS": key})
	s.breakConnection("conn_cs", "profile_cs")
	s.waitForStatus("conn_cs", workflows.StatusAwaitingUser)
	s.repairConnection("conn_cs")
	s.waitForStatus("conn_cs", workflows.StatusRepaired)

	// The history as Temporal holds it: ciphertext only.
	payloads := historyPayloads(t, rawClient(t, s), workflows.WorkflowID(sandbox.Name, "conn_cs"))
	require.NotEmpty(t, payloads)
	for _, p := range payloads {
		require.Equal(t, codec.Encoding, string(p.GetMetadata()[converter.MetadataEncoding]))
		require.NotContains(t, string(p.GetData()), "profile_cs")
	}

	// The operator's shell: the workers' keys and the Temporal connection's
	// namespace; nothing else.
	ns := s.cfg.Temporal.Namespace
	const uiOrigin = "http://localhost:8233"
	endpoint := startCodecServer(t, map[string]string{"RELINK_PAYLOAD_KEYS": key, "TEMPORAL_NAMESPACE": ns}, uiOrigin)

	// temporal workflow show --codec-endpoint <endpoint>: no credential.
	remote := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{
		Endpoint: endpoint,
		ModifyRequest: func(r *http.Request) error {
			r.Header.Set("X-Namespace", ns)
			return nil
		},
	})
	clear, err := remote.Decode(payloads)
	require.NoError(t, err)
	require.Len(t, clear, len(payloads))
	var text strings.Builder
	for _, p := range clear {
		assert.Equal(t, "json/plain", string(p.GetMetadata()[converter.MetadataEncoding]))
		text.Write(p.GetData())
	}
	assert.Contains(t, text.String(), "profile_cs", "the repair's input, in clear")

	// The temporal CLI itself, where it is installed (CI installs it
	// before this test): workflow show --codec-endpoint, no --codec-auth.
	t.Run("temporal workflow show", func(t *testing.T) {
		temporal := os.Getenv("TEMPORAL_CLI")
		if temporal == "" {
			var err error
			if temporal, err = exec.LookPath("temporal"); err != nil {
				t.Skip("the Temporal CLI is not installed: go install github.com/temporalio/cli/cmd/temporal@v1.5.1")
			}
		}
		// show is the repair's input as the CLI prints it (-o json: the
		// payload's metadata and data, base64).
		show := func(endpoint string) (encoding, data string) {
			args := []string{"workflow", "show", "-w", workflows.WorkflowID(sandbox.Name, "conn_cs"),
				"--address", s.cfg.Temporal.Address, "--namespace", ns, "-o", "json"}
			if endpoint != "" {
				args = append(args, "--codec-endpoint", endpoint)
			}
			cmd := exec.Command(temporal, args...)
			cmd.Env = append(os.Environ(), "TEMPORAL_CONFIG_FILE="+os.DevNull)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			require.NoError(t, err, stderr.String())
			var shown struct {
				Events []struct {
					Started *struct {
						Input struct {
							Payloads []struct {
								Metadata map[string][]byte
								Data     []byte
							}
						}
					} `json:"workflowExecutionStartedEventAttributes"`
				}
			}
			require.NoError(t, json.Unmarshal(out, &shown))
			require.NotEmpty(t, shown.Events)
			require.NotNil(t, shown.Events[0].Started)
			require.Len(t, shown.Events[0].Started.Input.Payloads, 1)
			p := shown.Events[0].Started.Input.Payloads[0]
			return string(p.Metadata[converter.MetadataEncoding]), string(p.Data)
		}
		encoding, data := show("")
		assert.Equal(t, codec.Encoding, encoding, "without the codec server: ciphertext")
		assert.NotContains(t, data, "profile_cs")
		encoding, data = show(endpoint)
		assert.Equal(t, "json/plain", encoding, "through it: the repair's input in clear")
		assert.Contains(t, data, "profile_cs")
	})

	// The Web UI in the operator's browser: a preflight, then the call.
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: payloads[:1]})
	require.NoError(t, err)
	browser := func(method, origin string, body []byte, headers ...string) (*http.Response, []byte) {
		req, err := http.NewRequest(method, endpoint+"/decode", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, b
	}
	resp, _ := browser(http.MethodOptions, uiOrigin, nil, "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "content-type,x-namespace")
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, uiOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
	resp, answer := browser(http.MethodPost, uiOrigin, body, "Content-Type", "application/json", "X-Namespace", ns)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(answer))
	assert.Equal(t, uiOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
	var decoded commonpb.Payloads
	require.NoError(t, protojson.Unmarshal(answer, &decoded))
	assert.Equal(t, clear[0].GetData(), decoded.Payloads[0].GetData())

	// Another origin, or another namespace, reads nothing.
	resp, _ = browser(http.MethodPost, "https://attacker.example", body, "Content-Type", "text/plain", "X-Namespace", ns)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
	resp, _ = browser(http.MethodPost, uiOrigin, body, "Content-Type", "application/json", "X-Namespace", "another-namespace")
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	// The keys are the boundary: a codec server with others cannot open it.
	otherEndpoint := startCodecServer(t, map[string]string{"RELINK_PAYLOAD_KEYS": newKey(t, "other"), "TEMPORAL_NAMESPACE": ns}, uiOrigin)
	other := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{Endpoint: otherEndpoint})
	_, err = other.Decode(payloads)
	assert.ErrorContains(t, err, "which is not in RELINK_PAYLOAD_KEYS")
	assert.ErrorContains(t, err, "op1")
}
