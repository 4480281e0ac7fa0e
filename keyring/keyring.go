// Package keyring parses, generates and stores Relink's symmetric and
// signing keys. Every key setting (RELINK_PAYLOAD_KEYS,
// RELINK_CLIENT_TOKEN_KEYS) has one form: "keyId:base64 32 bytes", several
// separated by commas. The first key is the active one (it encrypts or
// signs); every key in the list still decrypts or verifies, which is how a
// key is rotated: prepend the new one, and drop the old one once nothing
// made with it is still needed.
package keyring

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Size is the length of every key: AES-256 keys and Ed25519 seeds.
const Size = 32

// Key is one named key.
type Key struct {
	ID     string
	Secret []byte
}

// String hides the secret, so a key printed by mistake leaks nothing.
func (k Key) String() string { return "key " + k.ID }

// Format writes k in the setting's form.
func (k Key) Format() string { return k.ID + ":" + base64.StdEncoding.EncodeToString(k.Secret) }

// idPattern is what a key id may be: it is written in every payload's
// metadata and in every token's header, and errors name keys by it.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Parse reads "id:base64,…"; name is the setting, for errors. Errors name a
// key by its position, never quoting what was written: a key written
// back to front would otherwise put its secret in a log.
func Parse(name, list string) ([]Key, error) {
	var keys []Key
	seen := map[string]bool{}
	for i, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, b64, ok := strings.Cut(item, ":")
		if !ok || !idPattern.MatchString(id) {
			return nil, fmt.Errorf("%s: key %d must be written keyId:base64, keyId being 1 to 64 of A-Z a-z 0-9 . _ -", name, i+1)
		}
		secret, err := decodeBase64(b64)
		if err != nil {
			return nil, fmt.Errorf("%s: key %d is not base64", name, i+1)
		}
		if len(secret) != Size {
			return nil, fmt.Errorf("%s: key %d is %d bytes; it must be %d", name, i+1, len(secret), Size)
		}
		if seen[id] {
			return nil, fmt.Errorf("%s: key %d repeats an earlier key id", name, i+1)
		}
		seen[id] = true
		keys = append(keys, Key{ID: id, Secret: secret})
	}
	return keys, nil
}

// minDistinctBytes: a secret with fewer different byte values was not
// drawn at random (all zeros, a word or pattern repeated). 32 random
// bytes have about 30; fewer than 16 happens with odds below 1 in 10^20.
const minDistinctBytes = 16

// Weak reports a secret that was not drawn at random.
func Weak(secret []byte) bool {
	var seen [256]bool
	distinct := 0
	for _, b := range secret {
		if !seen[b] {
			seen[b] = true
			distinct++
		}
	}
	return distinct < minDistinctBytes
}

// decodeBase64 accepts standard and URL-safe base64, padded or not.
func decodeBase64(s string) ([]byte, error) {
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		var b []byte
		if b, err = enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, err
}

// Generate makes a new random key named id.
func Generate(id string) (Key, error) {
	secret := make([]byte, Size)
	if _, err := rand.Read(secret); err != nil {
		return Key{}, err
	}
	return Key{ID: id, Secret: secret}, nil
}

// LoadOrCreate reads the key list stored at path, creating it (mode 0600,
// its directory 0700) with one new key named id on first use. The dev stack
// keeps its keys this way, so they survive restarts. The file appears
// whole or not at all (written aside, then renamed), so a crash cannot
// leave an empty key file behind.
func LoadOrCreate(path, id string) ([]Key, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err := Generate(id)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		f, err := os.CreateTemp(filepath.Dir(path), ".keys-*") // 0600
		if err != nil {
			return nil, fmt.Errorf("create key file: %w", err)
		}
		defer os.Remove(f.Name())
		_, err = f.WriteString(key.Format() + "\n")
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			// Link, unlike rename, fails if another process created the
			// file first: then its key is the one, and is read below.
			err = os.Link(f.Name(), path)
			if errors.Is(err, os.ErrExist) {
				return LoadOrCreate(path, id)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("write key file: %w", err)
		}
		return []Key{key}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	keys, err := Parse(path, strings.Join(strings.Fields(string(b)), ","))
	if err == nil && len(keys) == 0 {
		err = fmt.Errorf("%s holds no key", path)
	}
	return keys, err
}
