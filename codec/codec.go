// Package codec encrypts every payload Relink writes to Temporal (workflow
// and activity inputs and results, signals, updates, queries, memos,
// failures) with AES-256-GCM, and serves Temporal's remote codec protocol
// so the Web UI and the temporal CLI can show operators the clear text.
//
// An encrypted payload's metadata says how to open it and nothing else:
// its encoding (binary/encrypted), the key id (so keys rotate) and, when
// the SDK names the workflow (it does for every workflow, activity, signal,
// update and query payload), the workflow id. The key id and workflow id
// are the AES-GCM additional data, so a payload cannot be moved to another
// workflow, nor relabelled with another key, without failing to decrypt.
// The remote codec protocol carries no workflow id, so the codec endpoint
// trusts the payload's own; everywhere the SDK knows it, it must match.
package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"

	"github.com/relink-dev/relink/keyring"
)

// Metadata keys and the encoding of an encrypted payload.
const (
	Encoding            = "binary/encrypted"
	MetadataKeyID       = "encryption-key-id"
	MetadataWorkflowID  = "encryption-workflow-id"
	additionalDataLabel = "relink-payload-v1"
)

// ScheduleActionPrefix begins the workflow id of every Temporal Schedule
// action of Relink's (workflows.ScheduleID: the reconciliation sweeps).
const ScheduleActionPrefix = "relink-reconcile-"

// scheduledRun reports whether workflowID is a run a Temporal Schedule of
// Relink's started for the action whose workflow id is actionID: the
// Schedule names each run actionID-<its time, RFC 3339 in UTC>, while the
// action's arguments were sealed (when the Schedule was written) for
// actionID. No other workflow may read another's payloads.
func scheduledRun(actionID, workflowID string) bool {
	at, ok := strings.CutPrefix(workflowID, actionID+"-")
	if !ok || !strings.HasPrefix(actionID, ScheduleActionPrefix) {
		return false
	}
	t, err := time.Parse(time.RFC3339, at)
	return err == nil && t.UTC().Format(time.RFC3339) == at
}

// ErrWrongWorkflow: a payload bound to one workflow was read for another.
var ErrWrongWorkflow = errors.New("payload belongs to another workflow")

// Encryption is the PayloadCodec. The first key encrypts; every key
// decrypts. A payload that is not encrypted passes through on decode, so a
// namespace that turns encryption on keeps reading its older histories.
type Encryption struct {
	active     string
	ciphers    map[string]cipher.AEAD
	workflowID string
}

// NewEncryption builds the codec from a key list (at least one key).
func NewEncryption(keys []keyring.Key) (*Encryption, error) {
	if len(keys) == 0 {
		return nil, errors.New("codec: no payload key")
	}
	e := &Encryption{active: keys[0].ID, ciphers: map[string]cipher.AEAD{}}
	for _, k := range keys {
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("codec: key %s: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("codec: key %s: %w", k.ID, err)
		}
		e.ciphers[k.ID] = aead
	}
	return e, nil
}

// WithSerializationContext binds payloads to the workflow the SDK names.
func (e *Encryption) WithSerializationContext(sc converter.SerializationContext) converter.PayloadCodec {
	var id string
	switch c := sc.(type) {
	case converter.WorkflowSerializationContext:
		id = c.WorkflowID
	case converter.ActivitySerializationContext:
		id = c.WorkflowID
	}
	bound := *e
	bound.workflowID = id
	return &bound
}

// Encode implements converter.PayloadCodec.
func (e *Encryption) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("codec: marshal payload: %w", err)
		}
		aead := e.ciphers[e.active]
		nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("codec: nonce: %w", err)
		}
		meta := map[string][]byte{
			converter.MetadataEncoding: []byte(Encoding),
			MetadataKeyID:              []byte(e.active),
		}
		if e.workflowID != "" {
			meta[MetadataWorkflowID] = []byte(e.workflowID)
		}
		out[i] = &commonpb.Payload{
			Metadata: meta,
			Data:     aead.Seal(nonce, nonce, plain, additionalData(e.active, e.workflowID)),
		}
	}
	return out, nil
}

// Decode implements converter.PayloadCodec.
func (e *Encryption) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != Encoding {
			out[i] = p
			continue
		}
		keyID := string(p.GetMetadata()[MetadataKeyID])
		aead, ok := e.ciphers[keyID]
		if !ok {
			return nil, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("codec: payload encrypted with key %q, which is not in RELINK_PAYLOAD_KEYS", keyID),
				"UnknownPayloadKey", nil)
		}
		boundTo := string(p.GetMetadata()[MetadataWorkflowID])
		if e.workflowID != "" && boundTo != "" && boundTo != e.workflowID && !scheduledRun(boundTo, e.workflowID) {
			return nil, fmt.Errorf("codec: %w (%s, read for %s)", ErrWrongWorkflow, boundTo, e.workflowID)
		}
		data := p.GetData()
		if len(data) < aead.NonceSize() {
			return nil, errors.New("codec: encrypted payload too short")
		}
		plain, err := aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], additionalData(keyID, boundTo))
		if err != nil {
			return nil, fmt.Errorf("codec: payload does not decrypt with key %q: tampered, or moved from another workflow", keyID)
		}
		var inner commonpb.Payload
		if err := proto.Unmarshal(plain, &inner); err != nil {
			return nil, fmt.Errorf("codec: decrypted payload: %w", err)
		}
		out[i] = &inner
	}
	return out, nil
}

func additionalData(keyID, workflowID string) []byte {
	return []byte(additionalDataLabel + "\x00" + keyID + "\x00" + workflowID)
}

// DataConverter is the SDK's default converter with every payload going
// through codec; nil codec means no encryption.
func DataConverter(codec converter.PayloadCodec) converter.DataConverter {
	if codec == nil {
		return converter.GetDefaultDataConverter()
	}
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), codec)
}

// FailureConverter also encrypts failure messages and stack traces, which
// can quote a provider's answer, bound to their workflow like every other
// payload.
func FailureConverter(dc converter.DataConverter, encrypted bool) converter.FailureConverter {
	return &failureConverter{
		FailureConverter: temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
			DataConverter:          dc,
			EncodeCommonAttributes: encrypted,
		}),
		dc:        dc,
		encrypted: encrypted,
	}
}

// failureConverter passes the SDK's serialization context (the workflow)
// on to the data converter that encrypts failures; the SDK's default
// failure converter does not.
type failureConverter struct {
	converter.FailureConverter
	dc        converter.DataConverter
	encrypted bool
}

func (f *failureConverter) WithSerializationContext(sc converter.SerializationContext) converter.FailureConverter {
	return FailureConverter(converter.WithDataConverterSerializationContext(f.dc, sc), f.encrypted)
}
