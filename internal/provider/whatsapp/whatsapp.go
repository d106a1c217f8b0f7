// Package whatsapp reads Meta WhatsApp Cloud API webhooks
// (Meta's webhook documentation): the GET verification handshake, the
// X-Hub-Signature-256 check and the batched POST body
// (entry[] × changes[] × messages[]), normalized to lull messages.
//
// Conversation key: "<metadata.phone_number_id>:<user>", where user is the
// message's from_user_id (the 2026 business-scoped user id) or, without
// one, its from (phone digits, a leading "+" removed). A message in a
// group (group_id set) is keyed by the group instead:
// "<phone_number_id>:<group_id>", so the whole group is one conversation.
package whatsapp

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider"
)

// Source names this provider in every message.
const Source = "whatsapp"

// Object is the payload's "object" for WhatsApp.
const Object = "whatsapp_business_account"

type payload struct {
	Object string  `json:"object"`
	Entry  []entry `json:"entry"`
}

type entry struct {
	ID      provider.Str `json:"id"`
	Changes []change     `json:"changes"`
}

type change struct {
	Field string          `json:"field"`
	Value json.RawMessage `json:"value"` // decoded only for field "messages"
}

type value struct {
	Metadata struct {
		DisplayPhoneNumber provider.Str `json:"display_phone_number"`
		PhoneNumberID      provider.Str `json:"phone_number_id"`
	} `json:"metadata"`
	Contacts []contact         `json:"contacts"`
	Messages []json.RawMessage `json:"messages"`
	Statuses []json.RawMessage `json:"statuses"`
	Errors   []json.RawMessage `json:"errors"`
}

type contact struct {
	Profile struct {
		Name     string `json:"name"`
		Username string `json:"username"`
	} `json:"profile"`
	WaID   provider.Str `json:"wa_id"`
	UserID provider.Str `json:"user_id"`
}

// Parse reads a POST body. Statuses, errors and changes of other fields are
// counted in Ignored; a message that cannot be keyed or deduped (no id, no
// sender, wrong shape) is skipped and explained in Problems, so one bad
// message never blocks the rest of a batch Meta would otherwise retry for
// seven days. Only a body that is not a WhatsApp payload at all is an error.
func Parse(body []byte, receivedAt time.Time) (provider.Result, error) {
	var res provider.Result
	var p payload
	if err := provider.Decode(body, &p); err != nil {
		return res, fmt.Errorf("whatsapp payload: %w", err)
	}
	if p.Object != Object {
		res.Ignore("object")
		return res, nil
	}
	for ei, e := range p.Entry {
		for ci, ch := range e.Changes {
			where := fmt.Sprintf("entry[%d].changes[%d]", ei, ci)
			if ch.Field != "messages" {
				res.Ignore("field:" + provider.Truncate(ch.Field, 64))
				continue
			}
			var v value
			if err := provider.Unmarshal(where+".value", ch.Value, &v); err != nil {
				res.Skip(err.Error())
				continue
			}
			res.Ignored = addN(res.Ignored, "status", len(v.Statuses))
			res.Ignored = addN(res.Ignored, "error", len(v.Errors))
			for mi, raw := range v.Messages {
				env, err := normalize(raw, &v, receivedAt)
				if err != nil {
					res.Skip(fmt.Sprintf("%s.value.messages[%d]: %v", where, mi, err))
					continue
				}
				res.Envelopes = append(res.Envelopes, env)
			}
		}
	}
	return res, nil
}

func addN(m map[string]int, k string, n int) map[string]int {
	if n == 0 {
		return m
	}
	if m == nil {
		m = map[string]int{}
	}
	m[k] += n
	return m
}

// normalize turns one messages[] item into an envelope.
func normalize(raw json.RawMessage, v *value, receivedAt time.Time) (ingest.Envelope, error) {
	var m message
	if err := provider.Unmarshal("message", raw, &m); err != nil {
		return ingest.Envelope{}, err
	}
	id, err := provider.ID("id", m.ID.String())
	if err != nil {
		return ingest.Envelope{}, err
	}
	from := strings.TrimPrefix(m.From.String(), "+")
	user := m.FromUserID.String()
	if user == "" {
		user = from
	}
	if user == "" {
		return ingest.Envelope{}, &ingest.FieldError{Field: "from", Problem: "is required (from or from_user_id)"}
	}
	if from == "" {
		from = user
	}
	pnid := v.Metadata.PhoneNumberID.String()
	keyed := user
	if m.GroupID != "" {
		keyed = m.GroupID.String()
	}
	key, err := provider.Key("metadata.phone_number_id", pnid, keyed)
	if err != nil {
		return ingest.Envelope{}, err
	}
	ts, err := provider.Timestamp("timestamp", m.Timestamp)
	if err != nil {
		return ingest.Envelope{}, err
	}
	msg := batch.Message{
		ID:         id,
		ReceivedAt: batch.FormatTime(receivedAt),
		Timestamp:  ts,
		Source:     Source,
		From:       from,
		To:         pnid,
	}
	meta := provider.Meta{}
	if c := v.contactOf(from, m.FromUserID.String()); c != nil {
		meta.Str("profile_name", c.Profile.Name)
		meta.Str("username", c.Profile.Username)
	}
	if m.FromUserID.String() != from {
		meta.Str("user_id", m.FromUserID.String())
	}
	meta.Str("display_phone_number", v.Metadata.DisplayPhoneNumber.String())
	meta.Str("group_id", m.GroupID.String())
	if m.Context != nil {
		msg.ReplyTo = m.Context.ID.String()
		meta.True("forwarded", m.Context.Forwarded)
		meta.True("frequently_forwarded", m.Context.FrequentlyForwarded)
		meta.Raw("referred_product", m.Context.ReferredProduct)
	}
	meta.Raw("referral", m.Referral)
	content(&m, &msg, meta, raw)
	msg.Metadata = meta.JSON()
	return ingest.Envelope{Key: key, Message: msg}, nil
}

// contactOf finds the contacts[] item of the sender, by wa_id or user_id
// (never by position: a batch may hold several users).
func (v *value) contactOf(waID, userID string) *contact {
	for i := range v.Contacts {
		c := &v.Contacts[i]
		if (waID != "" && strings.TrimPrefix(c.WaID.String(), "+") == waID) || (userID != "" && c.UserID.String() == userID) {
			return c
		}
	}
	return nil
}
