package config

import (
	"fmt"
	"os"
	"testing"
)

// The Temporal connection is read as the Temporal CLI reads it, default
// config file included; the developer's own (a Cloud profile, say) must
// not change what these tests see.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "relink-config-test-")
	if err == nil {
		err = os.Setenv("XDG_CONFIG_HOME", dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
