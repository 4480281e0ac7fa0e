package mxfake

import (
	"encoding/json"
	"time"
)

// statusIDs are the connection statuses' numbers (connection_status_id).
var statusIDs = map[string]int{
	"CREATED": 0, "PREVENTED": 1, "DENIED": 2, "CHALLENGED": 3, "REJECTED": 4, "LOCKED": 5, "CONNECTED": 6,
	"IMPEDED": 7, "RECONNECTED": 8, "DEGRADED": 9, "DISCONNECTED": 10, "DISCONTINUED": 11, "CLOSED": 12,
	"DELAYED": 13, "FAILED": 14, "UPDATED": 15, "DISABLED": 16, "IMPORTED": 17, "RESUMED": 18, "EXPIRED": 19,
	"IMPAIRED": 20, "PENDING": 21,
}

// ConnectionStatusBody is MX's CONNECTION_STATUS webhook for m entering
// its status (MX sends it for the end-user-actionable ones).
func ConnectionStatusBody(m Member) []byte {
	b, _ := json.Marshal(map[string]any{
		"action": "CHANGED", "connection_status": m.Status, "connection_status_id": statusIDs[m.Status],
		"connection_status_message": "To authenticate your connection to " + m.Name + ", please answer the following challenge(s).",
		"member_guid":               m.GUID, "type": "CONNECTION_STATUS", "user_guid": m.UserGUID,
	})
	return b
}

// AggregationBody is MX's AGGREGATION webhook: m aggregated successfully
// at completedAt.
func AggregationBody(m Member, completedAt time.Time) []byte {
	b, _ := json.Marshal(map[string]any{
		"action": "member_data_updated", "completed_at": completedAt.Unix(), "completed_on": completedAt.UTC().Format(time.DateOnly),
		"is_background": false, "job_guid": "JOB-fake", "member_guid": m.GUID,
		"transactions_created_count": 3, "transactions_updated_count": 2, "type": "AGGREGATION",
		"user_guid": m.UserGUID, "user_id": "partner-" + m.UserGUID,
	})
	return b
}
