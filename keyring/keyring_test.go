package keyring

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	a, _ := Generate("a")
	b, _ := Generate("b")
	keys, err := Parse("X", a.Format()+", "+b.Format())
	require.NoError(t, err)
	assert.Equal(t, []Key{a, b}, keys)

	for _, bad := range []string{"nokeyid", ":" + a.Format()[2:], "a:not base64!", "a:c2hvcnQ=", a.Format() + "," + a.Format()} {
		_, err := Parse("X", bad)
		assert.Error(t, err, bad)
		assert.NotContains(t, err.Error(), a.Format()[2:], "errors never quote the secret")
	}
	keys, err = Parse("X", "")
	assert.NoError(t, err)
	assert.Empty(t, keys)
	assert.Equal(t, "key a", a.String())
}

func TestLoadOrCreateKeepsItsKeyPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "payload-keys")
	first, err := LoadOrCreate(path, "dev")
	require.NoError(t, err)
	again, err := LoadOrCreate(path, "dev")
	require.NoError(t, err)
	assert.Equal(t, first, again, "the key survives restarts")
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	dir, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), dir.Mode().Perm())
}
