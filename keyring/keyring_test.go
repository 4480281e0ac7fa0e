package keyring

import (
	"encoding/base64"
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

	secret := a.Format()[2:]
	for _, bad := range []string{"nokeyid", ":" + secret, "a:not base64!", "a:c2hvcnQ=", a.Format() + "," + a.Format(),
		secret + ":a", "a b:" + secret, "a\x00:" + secret} {
		_, err := Parse("X", bad)
		assert.Error(t, err, bad)
		assert.NotContains(t, err.Error(), secret, "errors never quote the secret")
	}
	// Unpadded and URL-safe base64 are read too.
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		keys, err := Parse("X", "a:"+enc.EncodeToString(a.Secret))
		require.NoError(t, err)
		assert.Equal(t, a.Secret, keys[0].Secret)
	}
	keys, err = Parse("X", "")
	assert.NoError(t, err)
	assert.Empty(t, keys)
	assert.Equal(t, "key a", a.String())
}

func TestWeakTellsKeysNotDrawnAtRandom(t *testing.T) {
	for name, secret := range map[string][]byte{
		"zeros":            make([]byte, Size),
		"a word, repeated": []byte("passwordpasswordpasswordpassword"),
		"a counter":        []byte("01234567890123456789012345678901"),
	} {
		assert.True(t, Weak(secret), name)
	}
	for range 1000 {
		k, err := Generate("k")
		require.NoError(t, err)
		require.False(t, Weak(k.Secret), "a generated key is never weak")
	}
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
