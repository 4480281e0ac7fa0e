package config

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The README's configuration table lists exactly the variables Config reads,
// with the same defaults (RELINK_URL is the CLI's own and is checked by
// name only).
func TestReadmeConfigurationTableMatchesTheCode(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	section := string(readme)
	section = section[strings.Index(section, "## Configuration"):]
	section = section[:strings.Index(section, "\n## ")]
	row := regexp.MustCompile("(?m)^\\| `([A-Z0-9_]+)` \\| *(`([^`]*)`)? *\\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		documented[m[1]] = m[3]
	}
	delete(documented, "RELINK_URL")

	inCode := map[string]string{}
	collectEnv(reflect.TypeOf(Config{}), inCode)

	assert.Equal(t, keys(inCode), keys(documented))
	for name, def := range inCode {
		assert.Equal(t, def, documented[name], "default of %s", name)
	}
}

func collectEnv(t reflect.Type, out map[string]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("env")
		if !ok {
			if f.Type.Kind() == reflect.Struct {
				collectEnv(f.Type, out)
			}
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		_, def, _ := strings.Cut(opts, "default=")
		out[name] = def
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
