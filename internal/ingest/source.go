package ingest

import "strings"

// ProviderSources are the sources with a key space of their own. A provider
// conversation's key is "<source>:<provider key>" (whatsapp:PNID:5511…), and
// a generic unique_id may not start with "<source>:", so a generic POST can
// never write into, or dedupe against, a provider conversation. The list
// holds the providers lull plans to speak too, so adding one never turns an
// existing generic key into a provider's.
var ProviderSources = []string{"whatsapp", "evolution", "twilio", "waha", "zapi", "telegram", "chatwoot"}

// ProviderKey is the conversation key of a provider's conversation key.
func ProviderKey(source, key string) string { return source + ":" + key }

// reservedPrefix is the provider prefix key starts with ("" when none).
func reservedPrefix(key string) string {
	for _, s := range ProviderSources {
		if len(key) > len(s) && key[len(s)] == ':' && strings.EqualFold(key[:len(s)], s) {
			return key[:len(s)+1]
		}
	}
	return ""
}

// SourceOf is the source a conversation key belongs to: the provider whose
// key space it is in ("<provider>:…"), else "generic".
func SourceOf(key string) string {
	if p := reservedPrefix(key); p != "" {
		return strings.ToLower(p[:len(p)-1])
	}
	return "generic"
}
