package aggregator

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestRedeliveriesWithinTheSlidingWindowAreOneEvent(t *testing.T) {
	var d Redeliveries
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	const window = 10 * time.Minute
	id, at := d.Identify("conn:CODE", t0.Add(-time.Second), t0, window)
	assert.Equal(t, "conn:CODE:"+itoa(t0.Add(-time.Second).UnixNano()), id)
	assert.Equal(t, t0.Add(-time.Second), at)

	// Retries 9 minutes apart, each dated anew: the first one's id and time.
	for i := 1; i <= 2; i++ {
		now := t0.Add(time.Duration(i) * 9 * time.Minute)
		again, againAt := d.Identify("conn:CODE", now, now, window)
		assert.Equal(t, id, again)
		assert.Equal(t, at, againAt)
	}
	other, _ := d.Identify("conn:OTHER", t0, t0.Add(18*time.Minute), window)
	assert.NotEqual(t, id, other)
	// Quiet for longer than the window: a new event.
	later := t0.Add(29 * time.Minute)
	next, nextAt := d.Identify("conn:CODE", later, later, window)
	assert.NotEqual(t, id, next)
	assert.Equal(t, later, nextAt)
}

func itoa(n int64) string { return fmt.Sprint(n) }
