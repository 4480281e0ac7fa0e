package reconcile

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/relink-dev/relink/activities/aggregator"
)

// A retried page resumes after the connection it last checked, found by
// id in the page read again, which may have changed; when that one is
// gone, the page is checked from its start (a recheck starts nothing).
func TestResumeAtTheLastCheckedConnection(t *testing.T) {
	page := func(ids ...string) []aggregator.Candidate {
		var cs []aggregator.Candidate
		for _, id := range ids {
			cs = append(cs, aggregator.Candidate{ConnectionRef: aggregator.ConnectionRef{ConnectionID: id}})
		}
		return cs
	}
	assert.Equal(t, 0, resumeAt(page("a", "b", "c"), ""), "a first attempt")
	assert.Equal(t, 2, resumeAt(page("a", "b", "c"), "b"))
	assert.Equal(t, 1, resumeAt(page("a", "c", "d"), "a"), "b left the listing: c is next, not d")
	assert.Equal(t, 0, resumeAt(page("a", "c", "d"), "b"), "the last checked is gone: from the start")
	assert.Equal(t, 3, resumeAt(page("a", "b", "c"), "c"), "all checked")
}
