// Package version names the Relink build, for the User-Agent of every
// request Relink sends and for `relink version`.
package version

import "runtime/debug"

// Version is set at build time with
// -ldflags "-X github.com/relink-dev/relink/version.Version=v1.2.3";
// otherwise the module version `go install` recorded, or "dev".
var Version = ""

// String is the version.
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// UserAgent is "Relink/<version>".
func UserAgent() string { return "Relink/" + String() }
