package activities

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"
)

// Activities are the repair workflow's side effects. Register a pointer to
// it with the worker; the workflow refers to its methods by value so names
// stay checked by the compiler.
type Activities struct {
	Providers *Registry
	Notifier  Notifier
}

// InitializeRequest asks the repair's provider for an update-mode session.
type InitializeRequest struct {
	ConnectionRef
}

// Initialize calls the provider's connector initialize in update mode.
func (a *Activities) Initialize(ctx context.Context, req InitializeRequest) (Session, error) {
	p, err := a.Providers.Lookup(req.Provider)
	if err != nil {
		return Session{}, err
	}
	s, err := p.Initialize(ctx, req.ConnectionRef)
	if err != nil {
		activity.GetLogger(ctx).Warn("initialize failed", "provider", req.Provider,
			"connectionId", req.ConnectionID, "errorType", ErrorType(err), "error", err)
		return Session{}, err
	}
	activity.GetLogger(ctx).Info("initialized", "provider", req.Provider,
		"connectionId", req.ConnectionID, "connectorStatus", s.ConnectorStatus, "expiresAt", s.ExpiresAt)
	return s, nil
}

// Close reports the widget's success to the provider.
func (a *Activities) Close(ctx context.Context, req CloseRequest) error {
	p, err := a.Providers.Lookup(req.Provider)
	if err != nil {
		return err
	}
	if err := p.Close(ctx, req); err != nil {
		activity.GetLogger(ctx).Warn("close failed", "provider", req.Provider,
			"connectionId", req.ConnectionID, "errorType", ErrorType(err), "error", err)
		return err
	}
	activity.GetLogger(ctx).Info("closed", "provider", req.Provider, "connectionId", req.ConnectionID)
	return nil
}

// ConnectionStatus reads the connection's status from the provider.
func (a *Activities) ConnectionStatus(ctx context.Context, conn ConnectionRef) (ConnectionStatus, error) {
	p, err := a.Providers.Lookup(conn.Provider)
	if err != nil {
		return ConnectionStatus{}, err
	}
	st, err := p.ConnectionStatus(ctx, conn)
	if err != nil {
		return ConnectionStatus{}, err
	}
	activity.GetLogger(ctx).Info("connection status", "provider", conn.Provider,
		"connectionId", conn.ConnectionID, "health", st.Health, "providerStatus", st.ProviderStatus)
	return st, nil
}

// Notify delivers one event to the app.
func (a *Activities) Notify(ctx context.Context, ev Event) error {
	return a.Notifier.Notify(ctx, ev)
}

// Clock tells the time; tests pass a fixed one.
type Clock func() time.Time
