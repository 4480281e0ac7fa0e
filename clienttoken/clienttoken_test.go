package clienttoken

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/relink-dev/relink/keyring"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func authority(t *testing.T, now *time.Time, keys ...keyring.Key) *Authority {
	t.Helper()
	a, err := New(keys, 30*time.Minute, func() time.Time { return *now })
	require.NoError(t, err)
	return a
}

func TestMintAndCheck(t *testing.T) {
	now := t0
	k, _ := keyring.Generate("k1")
	a := authority(t, &now, k)
	scope := Scope{Provider: "quiltt", ConnectionID: "conn_1"}
	token, exp, err := a.Mint(scope)
	require.NoError(t, err)
	assert.Equal(t, t0.Add(30*time.Minute), exp)

	got, err := a.Check(token)
	require.NoError(t, err)
	assert.Equal(t, scope, got)

	now = t0.Add(30*time.Minute + 6*time.Second)
	_, err = a.Check(token)
	assert.ErrorIs(t, err, ErrExpired)

	now = t0
	parts := strings.Split(token, ".")
	for i, tampered := range []string{
		parts[0] + "." + parts[1] + "." + flip(parts[2]),
		parts[0] + "." + flip(parts[1]) + "." + parts[2],
		"not-a-token", "", parts[0] + "." + parts[1] + ".",
	} {
		_, err := a.Check(tampered)
		assert.Error(t, err, i)
	}
}

func TestKeysRotate(t *testing.T) {
	now := t0
	old, _ := keyring.Generate("old")
	next, _ := keyring.Generate("new")
	before := authority(t, &now, old)
	during := authority(t, &now, next, old)
	after := authority(t, &now, next)

	oldToken, _, err := before.Mint(Scope{Provider: "p", ConnectionID: "c"})
	require.NoError(t, err)
	newToken, _, err := during.Mint(Scope{Provider: "p", ConnectionID: "c"})
	require.NoError(t, err)

	_, err = during.Check(oldToken)
	assert.NoError(t, err, "tokens minted before the rotation still verify")
	_, err = before.Check(newToken)
	assert.ErrorIs(t, err, ErrUnknownKey, "the new key signs")
	_, err = after.Check(oldToken)
	assert.ErrorIs(t, err, ErrUnknownKey, "a dropped key verifies nothing")
}

// flip changes one character in the middle of a base64url segment.
func flip(s string) string {
	b := []byte(s)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// A reconnect link names one repair of one connection, lives at most 21
// days, and is neither a client token nor accepted as one.
func TestLinkTokens(t *testing.T) {
	now := t0
	k, _ := keyring.Generate("k1")
	a := authority(t, &now, k)
	scope := Scope{Provider: "sandbox", ConnectionID: "conn_1"}
	link, exp, err := a.MintLink(scope, "run-1", 7*24*time.Hour)
	require.NoError(t, err)
	assert.Equal(t, t0.Add(7*24*time.Hour), exp)
	got, err := a.CheckLink(link)
	require.NoError(t, err)
	assert.Equal(t, Link{Scope: scope, Repair: "run-1", ExpiresAt: exp}, got)

	_, err = a.Check(link)
	assert.ErrorIs(t, err, ErrClaims, "a link is not a client token")
	browser, _, err := a.Mint(scope)
	require.NoError(t, err)
	_, err = a.CheckLink(browser)
	assert.ErrorIs(t, err, ErrClaims, "a client token is not a link")

	_, long, err := a.MintLink(scope, "run-1", 90*24*time.Hour)
	require.NoError(t, err)
	assert.Equal(t, t0.Add(MaxLinkTTL), long, "at most 21 days")
	_, _, err = a.MintLink(scope, "", time.Hour)
	assert.Error(t, err, "a link names its repair")

	parts := strings.Split(link, ".")
	tampered := parts[0] + "." + parts[1] + "x." + parts[2]
	_, err = a.CheckLink(tampered)
	assert.Error(t, err)
	other, _ := keyring.Generate("k2")
	_, err = authority(t, &now, other).CheckLink(link)
	assert.ErrorIs(t, err, ErrUnknownKey)

	now = exp.Add(6 * time.Second)
	_, err = a.CheckLink(link)
	assert.ErrorIs(t, err, ErrExpired)
}

// A token is refused from the expiresAt Mint returned on, with no leeway:
// the API's expiresAt is exactly when it stops working. Only not-before
// keeps a leeway, for a checking gateway whose clock is behind the
// minting one's.
func TestNoLeewayOnExpiry(t *testing.T) {
	now := t0
	k, _ := keyring.Generate("k1")
	a := authority(t, &now, k)
	scope := Scope{Provider: "quiltt", ConnectionID: "conn_1"}
	token, exp, err := a.Mint(scope)
	require.NoError(t, err)
	link, linkExp, err := a.MintLink(scope, "run-1", time.Hour)
	require.NoError(t, err)

	now = exp.Add(-time.Nanosecond)
	_, err = a.Check(token)
	assert.NoError(t, err, "good until its expiresAt")
	for _, at := range []time.Time{exp, exp.Add(time.Nanosecond), exp.Add(time.Second), exp.Add(4 * time.Second)} {
		now = at
		_, err = a.Check(token)
		assert.ErrorIs(t, err, ErrExpired, "%s after expiresAt", at.Sub(exp))
	}
	now = linkExp.Add(-time.Nanosecond)
	_, err = a.CheckLink(link)
	assert.NoError(t, err)
	now = linkExp
	_, err = a.CheckLink(link)
	assert.ErrorIs(t, err, ErrExpired, "a link too")

	// A link lives until its repair's window ends, a time with a fraction
	// of a second: it works until the expiresAt answered, never less.
	now = t0
	odd, oddExp, err := a.MintLink(scope, "run-2", time.Hour+839*time.Millisecond)
	require.NoError(t, err)
	now = oddExp.Add(-time.Nanosecond)
	_, err = a.CheckLink(odd)
	assert.NoError(t, err, "good until the expiresAt answered")

	// Not before: a checking clock up to 5 s (the README's Security
	// model) behind the minting one's still accepts a fresh token; further
	// behind, not.
	now = t0.Add(-5 * time.Second)
	_, err = a.Check(token)
	assert.NoError(t, err)
	now = t0.Add(-6 * time.Second)
	_, err = a.Check(token)
	assert.ErrorIs(t, err, ErrClaims)
}
