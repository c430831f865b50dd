package tether

import "context"

// Origin is where a request came from: what the audit trail records and
// what throttling counts by. The transport puts it in the request's context;
// the services read it from there.
type Origin struct {
	IP        string
	UserAgent string
	// Client is what the client says about itself (browser, machine,
	// platform): recorded in the audit trail, never trusted.
	Client map[string]string
}

type originKey struct{}

// WithOrigin returns a context carrying o.
func WithOrigin(ctx context.Context, o Origin) context.Context {
	return context.WithValue(ctx, originKey{}, o)
}

// OriginOf returns the origin carried by ctx, or the zero Origin.
func OriginOf(ctx context.Context) Origin {
	o, _ := ctx.Value(originKey{}).(Origin)
	return o
}
