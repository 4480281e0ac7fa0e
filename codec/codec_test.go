package codec

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	failurepb "go.temporal.io/api/failure/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/relink-dev/relink/keyring"
)

func key(t *testing.T, id string) keyring.Key {
	t.Helper()
	k, err := keyring.Generate(id)
	require.NoError(t, err)
	return k
}

func payload(t *testing.T, v any) *commonpb.Payload {
	t.Helper()
	p, err := converter.GetDefaultDataConverter().ToPayload(v)
	require.NoError(t, err)
	return p
}

func inWorkflow(e *Encryption, id string) converter.PayloadCodec {
	return e.WithSerializationContext(converter.WorkflowSerializationContext{Namespace: "default", WorkflowID: id})
}

func TestEncryptsAndRotates(t *testing.T) {
	old, next := key(t, "old"), key(t, "new")
	before, err := NewEncryption([]keyring.Key{old})
	require.NoError(t, err)
	after, err := NewEncryption([]keyring.Key{next, old})
	require.NoError(t, err)
	secret := payload(t, map[string]string{"connectorToken": "ctok_secret"})

	sealed, err := inWorkflow(before, "repair:sandbox:c1").Encode([]*commonpb.Payload{secret})
	require.NoError(t, err)
	assert.Equal(t, Encoding, string(sealed[0].Metadata[converter.MetadataEncoding]))
	assert.Equal(t, "old", string(sealed[0].Metadata[MetadataKeyID]))
	assert.Equal(t, "repair:sandbox:c1", string(sealed[0].Metadata[MetadataWorkflowID]))
	assert.False(t, bytes.Contains(sealed[0].Data, []byte("ctok_secret")))
	assert.Len(t, sealed[0].Metadata, 3, "nothing but how to open it: the inner encoding is encrypted too")

	// After rotation the old payload still opens, and new ones use the new key.
	opened, err := inWorkflow(after, "repair:sandbox:c1").Decode(sealed)
	require.NoError(t, err)
	assert.Equal(t, secret.Data, opened[0].Data)
	resealed, err := after.Encode([]*commonpb.Payload{secret})
	require.NoError(t, err)
	assert.Equal(t, "new", string(resealed[0].Metadata[MetadataKeyID]))
	// Once the old key is dropped, what it sealed no longer opens: a named,
	// non-retryable error.
	_, err = before.Decode(resealed)
	assert.ErrorContains(t, err, `key "new"`)
}

func TestPayloadsAreBoundToTheirWorkflow(t *testing.T) {
	e, err := NewEncryption([]keyring.Key{key(t, "k")})
	require.NoError(t, err)
	sealed, err := inWorkflow(e, "repair:sandbox:mine").Encode([]*commonpb.Payload{payload(t, "x")})
	require.NoError(t, err)

	_, err = inWorkflow(e, "repair:sandbox:theirs").Decode(sealed)
	assert.ErrorIs(t, err, ErrWrongWorkflow)
	// Relabelling it as the other workflow's breaks the additional data.
	moved := &commonpb.Payload{Metadata: map[string][]byte{}, Data: sealed[0].Data}
	for k, v := range sealed[0].Metadata {
		moved.Metadata[k] = v
	}
	moved.Metadata[MetadataWorkflowID] = []byte("repair:sandbox:theirs")
	_, err = inWorkflow(e, "repair:sandbox:theirs").Decode([]*commonpb.Payload{moved})
	assert.ErrorContains(t, err, "does not decrypt")
	// The codec endpoint has no workflow context: it trusts the payload's.
	_, err = e.Decode(sealed)
	assert.NoError(t, err)
}

// A Temporal Schedule seals its action's arguments for the action's
// workflow id and starts each run as that id plus its time: those runs
// read them; nothing else does.
func TestAScheduleRunReadsItsActionsArguments(t *testing.T) {
	e, err := NewEncryption([]keyring.Key{key(t, "k")})
	require.NoError(t, err)
	sealed, err := inWorkflow(e, "relink-reconcile-meld").Encode([]*commonpb.Payload{payload(t, "x")})
	require.NoError(t, err)
	_, err = inWorkflow(e, "relink-reconcile-meld-2026-12-07T13:28:11Z").Decode(sealed)
	assert.NoError(t, err)
	for _, other := range []string{"relink-reconcile-meld-x", "relink-reconcile-meldy-2026-12-07T13:28:11Z", "relink-reconcile",
		"relink-reconcile-meld-2026-12-07T13:28:11+01:00", "relink-reconcile-meld-2026-12-07T13:28:11.5Z"} {
		_, err = inWorkflow(e, other).Decode(sealed)
		assert.ErrorIs(t, err, ErrWrongWorkflow, other)
	}
	// Only a Schedule's action: a repair's payloads stay its own.
	repair, err := inWorkflow(e, "repair:plaid:conn_1").Encode([]*commonpb.Payload{payload(t, "x")})
	require.NoError(t, err)
	_, err = inWorkflow(e, "repair:plaid:conn_1-2026-12-07T13:28:11Z").Decode(repair)
	assert.ErrorIs(t, err, ErrWrongWorkflow)
}

func TestTamperedAndClearPayloads(t *testing.T) {
	e, err := NewEncryption([]keyring.Key{key(t, "k")})
	require.NoError(t, err)
	sealed, err := e.Encode([]*commonpb.Payload{payload(t, "x")})
	require.NoError(t, err)
	sealed[0].Data[len(sealed[0].Data)-1] ^= 1
	_, err = e.Decode(sealed)
	assert.Error(t, err)

	clear := payload(t, "from before encryption was turned on")
	out, err := e.Decode([]*commonpb.Payload{clear})
	require.NoError(t, err)
	assert.Same(t, clear, out[0])
}

func TestDataConverterRoundTrip(t *testing.T) {
	e, err := NewEncryption([]keyring.Key{key(t, "k")})
	require.NoError(t, err)
	dc := DataConverter(e)
	p, err := dc.ToPayload(map[string]int{"a": 1})
	require.NoError(t, err)
	var back map[string]int
	require.NoError(t, dc.FromPayload(p, &back))
	assert.Equal(t, 1, back["a"])
	assert.Same(t, converter.GetDefaultDataConverter(), DataConverter(nil))
}

func BenchmarkEncode(b *testing.B) {
	k, _ := keyring.Generate("k")
	e, _ := NewEncryption([]keyring.Key{k})
	p, _ := converter.GetDefaultDataConverter().ToPayload(bytes.Repeat([]byte("x"), 4096))
	b.ReportAllocs()
	for b.Loop() {
		_, _ = e.Encode([]*commonpb.Payload{p})
	}
}

func TestFailuresAreEncryptedAndBound(t *testing.T) {
	e, err := NewEncryption([]keyring.Key{key(t, "k")})
	require.NoError(t, err)
	fc := FailureConverter(DataConverter(e), true)
	in := func(id string) converter.FailureConverter {
		return converter.WithFailureConverterSerializationContext(fc,
			converter.ActivitySerializationContext{Namespace: "default", WorkflowID: id})
	}

	f := in("repair:sandbox:a").ErrorToFailure(errors.New("provider said token=abc"))
	assert.NotContains(t, f.GetMessage(), "token=abc")
	assert.Equal(t, "repair:sandbox:a", string(f.GetEncodedAttributes().GetMetadata()[MetadataWorkflowID]))
	assert.NotContains(t, string(f.GetEncodedAttributes().GetData()), "token=abc")

	// FailureToError decodes the failure in place: each read gets a copy.
	read := func(id string) string {
		return in(id).FailureToError(proto.Clone(f).(*failurepb.Failure)).Error()
	}
	assert.NotContains(t, read("repair:sandbox:b"), "token=abc", "another workflow cannot read it")
	assert.Contains(t, read("repair:sandbox:a"), "token=abc")
}
