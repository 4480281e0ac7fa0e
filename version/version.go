// Package version names the Relink build, for the User-Agent of every
// request Relink sends and for `relink version`.
package version

import "runtime/debug"

// Version is set at build time with
// -ldflags "-X github.com/relink-dev/relink/version.Version=v1.2.3"
// (deploy/build-static.sh does); otherwise it is the module version `go
// install` recorded, else "dev-" and the commit `go build` recorded from
// the checkout (with "-dirty" for uncommitted changes), else Unstamped.
var Version = ""

// Unstamped is the version of a build that records none (go run, tests).
const Unstamped = "dev"

// String is the version. It is also the default Worker Versioning build
// id, so two different builds must not share one: hence the commit.
func String() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Unstamped
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	var revision, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 12:
			revision = s.Value[:12]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if revision == "" {
		return Unstamped
	}
	return Unstamped + "-" + revision + dirty
}

// UserAgent is "Relink/<version>".
func UserAgent() string { return "Relink/" + String() }
