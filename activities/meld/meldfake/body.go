package meldfake

import "context"

type bodyKey struct{}

func withBody(ctx context.Context, body map[string]any) context.Context {
	return context.WithValue(ctx, bodyKey{}, body)
}

func bodyOf(ctx context.Context) map[string]any {
	b, _ := ctx.Value(bodyKey{}).(map[string]any)
	return b
}
