package aggregator

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHTTPStatusErrorClassification(t *testing.T) {
	for status, want := range map[int]string{
		404: ErrTypeConnectionNotFound, 409: ErrTypeNotRepairable, 422: ErrTypeNotRepairable,
		400: ErrTypeInvalidInput, 429: "", 500: "", 503: "", 401: "",
	} {
		assert.Equal(t, want, TypeOf(HTTPStatusError("initialize", status, "")), status)
	}
}

func TestNamedFindsWrappedErrors(t *testing.T) {
	bare := NotFound("no such connection")
	assert.Same(t, bare, Named(bare))
	wrapped := Named(fmt.Errorf("meld initialize: %w", bare))
	if assert.NotNil(t, wrapped) {
		assert.Equal(t, ErrTypeConnectionNotFound, wrapped.Type)
		assert.Equal(t, "meld initialize: no such connection", wrapped.Message)
	}
	assert.Nil(t, Named(fmt.Errorf("initialize: %w", errors.New("503"))))
	assert.Nil(t, Named(nil))
}
