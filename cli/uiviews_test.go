package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/relink-dev/relink/temporalui"
)

func TestUIViewsPrintsALinkPerViewAndTheColumns(t *testing.T) {
	var out, stderr bytes.Buffer
	assert.Equal(t, 0, Run([]string{"ui-views", "-ui", "https://temporal.example.com", "-namespace", "relink"}, &out, &stderr), stderr.String())
	for _, v := range temporalui.Views() {
		assert.Contains(t, out.String(), v.Name+" ")
		assert.Contains(t, out.String(), v.SaveURL("https://temporal.example.com", "relink"))
	}
	assert.Contains(t, out.String(), "RelinkStatus and RelinkReasonCode")
	assert.Contains(t, out.String(), "once")

	for _, bad := range [][]string{{"ui-views"}, {"ui-views", "-ui", "temporal.example.com"}, {"ui-views", "-ui", "ftp://x"}} {
		stderr.Reset()
		assert.Equal(t, 2, Run(bad, &bytes.Buffer{}, &stderr), "%v", bad)
		assert.True(t, strings.Contains(stderr.String(), "-ui must be"), stderr.String())
	}
}
