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

// Parse reads "id:base64,…"; name is the setting, for errors. Errors never
// quote the secret.
func Parse(name, list string) ([]Key, error) {
	var keys []Key
	seen := map[string]bool{}
	for i, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, b64, ok := strings.Cut(item, ":")
		if !ok || id == "" || strings.ContainsAny(id, " \t\"") || len(id) > 64 {
			return nil, fmt.Errorf("%s: key %d must be written keyId:base64 (keyId 1 to 64 characters)", name, i+1)
		}
		secret, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			if secret, err = base64.RawURLEncoding.DecodeString(b64); err != nil {
				return nil, fmt.Errorf("%s: key %q is not base64", name, id)
			}
		}
		if len(secret) != Size {
			return nil, fmt.Errorf("%s: key %q is %d bytes; it must be %d", name, id, len(secret), Size)
		}
		if seen[id] {
			return nil, fmt.Errorf("%s: key id %q appears twice", name, id)
		}
		seen[id] = true
		keys = append(keys, Key{ID: id, Secret: secret})
	}
	return keys, nil
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
// keeps its keys this way, so they survive restarts.
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
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create key file: %w", err)
		}
		if _, err := f.WriteString(key.Format() + "\n"); err != nil {
			f.Close()
			return nil, fmt.Errorf("write key file: %w", err)
		}
		return []Key{key}, f.Close()
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
