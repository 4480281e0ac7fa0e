package config

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/activities/providers"
)

// The README's configuration tables list exactly the variables Relink
// reads: its own with the same defaults as Config (RELINK_URL is the CLI's
// own and is checked by name only), and the Temporal connection's exactly
// as the SDK's envconfig module, which reads them, names them. Providers'
// variables are read from each registered adapter's settings struct.
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
	temporalRow := regexp.MustCompile("(?m)^\\| `(TEMPORAL_[A-Z0-9_]+)\\*?` \\|")
	temporalDocumented := map[string]string{}
	for _, m := range temporalRow.FindAllStringSubmatch(section, -1) {
		temporalDocumented[m[1]] = ""
	}
	delete(documented, "RELINK_URL")
	assert.Equal(t, temporalVariables(t), keys(temporalDocumented))

	inCode := configEnv()

	assert.Equal(t, keys(inCode), keys(documented))
	for name, def := range inCode {
		assert.Equal(t, def, documented[name], "default of %s", name)
	}
	// `relink dev`'s own defaults are in their rows' meaning.
	for name, def := range DevDefaults {
		rowOf := regexp.MustCompile("(?m)^\\| `" + name + "` \\|.*\\|$")
		assert.Contains(t, rowOf.FindString(section), "`relink dev`'s default: `"+def+"`", "the row of %s", name)
	}
}

// The walkthrough is run from the checkout: its commands write nothing
// there (a file they need goes to a temporary one, `W=$(mktemp)`), so
// trying Relink leaves no stray file for git to show.
func TestReadmeWalkthroughWritesNoFileIntoTheCheckout(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	section := string(readme)
	section = section[strings.Index(section, "## Five-minute walkthrough"):]
	section = section[:strings.Index(section, "\n## ")]
	block := regexp.MustCompile("(?s)```sh\n(.*?)```")
	// A redirection, curl's -o/--output, or tee, and what it writes to.
	write := regexp.MustCompile(`(?:>>?\s*|\s-o\s+|\s--output[\s=]\s*|\btee\s+(?:-a\s+)?)("?[^\s|&;]+)`)
	blocks := block.FindAllStringSubmatch(section, -1)
	require.NotEmpty(t, blocks)
	for _, b := range blocks {
		for _, line := range strings.Split(b[1], "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			for _, m := range write.FindAllStringSubmatch(line, -1) {
				target := strings.Trim(m[1], `"`)
				assert.True(t, strings.HasPrefix(target, "$") || strings.HasPrefix(target, "/dev/") || strings.HasPrefix(target, "/tmp/"),
					"the walkthrough writes %s into the checkout: %s", target, line)
			}
		}
	}
}

// temporalVariables are the TEMPORAL_* names the envconfig module looks
// up, read from its source (TEMPORAL_GRPC_META_ is a prefix).
func temporalVariables(t *testing.T) []string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "go.temporal.io/sdk/contrib/envconfig").Output()
	require.NoError(t, err)
	dir := strings.TrimSpace(string(out))
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	require.NoError(t, err)
	names := map[string]string{}
	literal := regexp.MustCompile(`"(TEMPORAL_[A-Z0-9_]*)"`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range literal.FindAllStringSubmatch(string(src), -1) {
			names[m[1]] = ""
		}
	}
	require.Contains(t, names, "TEMPORAL_ADDRESS", "read the envconfig module from %s", dir)
	return keys(names)
}

// configEnv maps every variable Relink's configuration reads to its
// default: Config's own fields and each registered provider's settings.
func configEnv() map[string]string {
	out := map[string]string{}
	collectEnv(reflect.TypeOf(Config{}), out)
	for _, reg := range providers.All {
		collectEnv(reflect.TypeOf(reg.NewSettings()).Elem(), out)
	}
	return out
}

func collectEnv(t reflect.Type, out map[string]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
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
