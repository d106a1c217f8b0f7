// Package waha reads WAHA (WhatsApp HTTP API) webhooks: one event per
// request, {event, session, me, payload, …}. "message" and "message.any"
// become messages (messages sent by the session itself, fromMe, are
// skipped: message.any carries them too), "message.reaction" a reaction,
// and "presence.update" with typing or recording a typing hint; every
// other event is counted and ignored.
//
// Conversation key: "<session>:<chat id>", the chat id being the payload's
// from ("<digits>@c.us", "…@lid", or a group's "…@g.us"). A group is one
// conversation; each message's From names the participant.
package waha

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider"
)

// Source names this provider in every message.
const Source = "waha"

// Events lull acts on.
const (
	EventMessage    = "message"
	EventMessageAny = "message.any"
	EventReaction   = "message.reaction"
	EventPresence   = "presence.update"
)

type envelope struct {
	Event   string                     `json:"event"`
	Session provider.Str               `json:"session"`
	Engine  string                     `json:"engine"`
	Me      *struct{ ID provider.Str } `json:"me"`
	Payload json.RawMessage            `json:"payload"`
}

// Parse reads a webhook body. receivedAt is the time of receipt.
func Parse(body []byte, receivedAt time.Time) (provider.Result, error) {
	var res provider.Result
	var e envelope
	if err := provider.Decode(body, &e); err != nil {
		return res, fmt.Errorf("waha payload: %w", err)
	}
	event := strings.ToLower(strings.TrimSpace(e.Event))
	if event == "" {
		return res, &ingest.FieldError{Field: "event", Problem: "is required"}
	}
	switch event {
	case EventMessage, EventMessageAny, EventReaction, EventPresence:
	default:
		res.Ignore("event:" + provider.Truncate(event, 64))
		return res, nil
	}
	session := e.Session.String()
	if strings.TrimSpace(session) == "" {
		return res, &ingest.FieldError{Field: "session", Problem: "is required"}
	}
	if len(e.Payload) == 0 || e.Payload[0] != '{' {
		return res, &ingest.FieldError{Field: "payload", Problem: "must be a JSON object"}
	}
	me := ""
	if e.Me != nil {
		me = e.Me.ID.String()
	}
	var err error
	if event == EventPresence {
		err = presence(&res, session, e.Payload, receivedAt)
	} else {
		err = message(&res, session, me, e.Engine, e.Payload, receivedAt)
	}
	if err != nil {
		return provider.Result{}, fmt.Errorf("waha %s: %w", event, err)
	}
	return res, nil
}

// isBroadcast: status updates, broadcast lists and channels are not
// conversations anyone answers.
func isBroadcast(id string) bool {
	return strings.HasSuffix(id, "@broadcast") || strings.HasSuffix(id, "@newsletter")
}

func isGroup(id string) bool { return strings.HasSuffix(id, "@g.us") }

type presenceData struct {
	ID        provider.Str `json:"id"`
	Presences []struct {
		Participant       provider.Str `json:"participant"`
		LastKnownPresence string       `json:"lastKnownPresence"`
	} `json:"presences"`
}

// presence turns the first "typing" or "recording" of the list into one
// typing envelope for the chat; the other presences ("paused", "online",
// "offline") are counted and ignored.
func presence(res *provider.Result, session string, raw json.RawMessage, receivedAt time.Time) error {
	var d presenceData
	if err := provider.Unmarshal("payload", raw, &d); err != nil {
		return err
	}
	chat := d.ID.String()
	if isBroadcast(chat) {
		res.Ignore("broadcast")
		return nil
	}
	typing, state := "", ""
	for _, p := range d.Presences {
		s := strings.ToLower(p.LastKnownPresence)
		if (s == "typing" || s == "recording") && typing == "" {
			typing, state = p.Participant.String(), s
			if typing == "" {
				typing = chat
			}
			continue
		}
		res.Ignore("presence:" + provider.Truncate(s, 32))
	}
	if typing == "" {
		return nil
	}
	key, err := provider.Key("payload.id", session, chat)
	if err != nil {
		return err
	}
	res.Envelopes = append(res.Envelopes, provider.Typing(Source, key, typing, session, state, receivedAt))
	return nil
}
