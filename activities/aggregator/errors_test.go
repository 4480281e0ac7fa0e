package aggregator

import (
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
