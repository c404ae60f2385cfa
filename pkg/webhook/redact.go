package webhook

import "net/url"

// redactURL drops credentials and the query from a URL for logs: webhook
// URLs often carry tokens there.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	return u.String()
}
