// Package evolution reads Evolution API v2 webhooks:
// one event per request, {event, instance, data, …}. messages.upsert
// becomes a message, presence.update with composing/recording a typing
// hint; every other event is counted and ignored.
//
// Conversation key: "<instance>:<chat JID>". For a one-to-one chat the JID
// is the user's: key.remoteJidAlt when the chat uses LID addressing
// (key.addressingMode "lid", or a remoteJid ending in @lid) and an Alt is
// given, else key.remoteJid — the phone JID Evolution itself prefers. For a
// group (@g.us) it is the group's JID: the group is one conversation and
// each message's From names the participant.
package evolution

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider"
)

// Source names this provider in every message.
const Source = "evolution"

// Events lull acts on (the body's "event", dotted lowercase; the
// UPPER_SNAKE spelling of Evolution's settings is accepted too).
const (
	EventMessagesUpsert = "messages.upsert"
	EventPresenceUpdate = "presence.update"
)

type payload struct {
	Event    string          `json:"event"`
	Instance provider.Str    `json:"instance"`
	Data     json.RawMessage `json:"data"`
}

// Parse reads a webhook body. receivedAt is the time of receipt.
func Parse(body []byte, receivedAt time.Time) (provider.Result, error) {
	var res provider.Result
	var p payload
	if err := provider.Decode(body, &p); err != nil {
		return res, fmt.Errorf("evolution payload: %w", err)
	}
	event := normalizeEvent(p.Event)
	if event == "" {
		return res, &ingest.FieldError{Field: "event", Problem: "is required"}
	}
	if event != EventMessagesUpsert && event != EventPresenceUpdate {
		res.Ignore("event:" + provider.Truncate(event, 64))
		return res, nil
	}
	instance := p.Instance.String()
	if strings.TrimSpace(instance) == "" {
		return res, &ingest.FieldError{Field: "instance", Problem: "is required"}
	}
	if len(p.Data) == 0 || p.Data[0] != '{' {
		return res, &ingest.FieldError{Field: "data", Problem: "must be a JSON object"}
	}
	var err error
	if event == EventMessagesUpsert {
		err = upsert(&res, instance, p.Data, receivedAt)
	} else {
		err = presence(&res, instance, p.Data, receivedAt)
	}
	if err != nil {
		return provider.Result{}, fmt.Errorf("evolution %s: %w", event, err)
	}
	return res, nil
}

// normalizeEvent spells an event the way the body does: "MESSAGES_UPSERT"
// and "messages.upsert" are both "messages.upsert".
func normalizeEvent(e string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSpace(e)), "_", ".")
}

// isBroadcast: status updates, broadcast lists and channels are not
// conversations anyone answers.
func isBroadcast(jid string) bool {
	return strings.HasSuffix(jid, "@broadcast") || strings.HasSuffix(jid, "@newsletter")
}

func isGroup(jid string) bool { return strings.HasSuffix(jid, "@g.us") }

type messageKey struct {
	RemoteJID      provider.Str `json:"remoteJid"`
	RemoteJIDAlt   provider.Str `json:"remoteJidAlt"`
	Participant    provider.Str `json:"participant"`
	ParticipantAlt provider.Str `json:"participantAlt"`
	AddressingMode string       `json:"addressingMode"`
	FromMe         bool         `json:"fromMe"`
	ID             provider.Str `json:"id"`
}

// userJID is the chat's JID as the key uses it, and the sender's.
func (k messageKey) chatAndSender() (chat, sender string) {
	lid := k.AddressingMode == "lid"
	remote := k.RemoteJID.String()
	if isGroup(remote) {
		sender = k.Participant.String()
		if alt := k.ParticipantAlt.String(); alt != "" && (lid || strings.HasSuffix(sender, "@lid")) {
			sender = alt
		}
		if sender == "" {
			sender = remote
		}
		return remote, sender
	}
	chat = remote
	if alt := k.RemoteJIDAlt.String(); alt != "" && (lid || strings.HasSuffix(remote, "@lid")) {
		chat = alt
	}
	return chat, chat
}

type upsertData struct {
	Key              messageKey                 `json:"key"`
	PushName         string                     `json:"pushName"`
	Message          map[string]json.RawMessage `json:"message"`
	MessageType      string                     `json:"messageType"`
	MessageTimestamp json.RawMessage            `json:"messageTimestamp"`
	InstanceID       provider.Str               `json:"instanceId"`
	Source           string                     `json:"source"`
	ContextInfo      *contextInfo               `json:"contextInfo"`
}

func upsert(res *provider.Result, instance string, raw json.RawMessage, receivedAt time.Time) error {
	var d upsertData
	if err := provider.Unmarshal("data", raw, &d); err != nil {
		return err
	}
	remote := d.Key.RemoteJID.String()
	switch {
	case d.Key.FromMe:
		res.Ignore("from_me")
		return nil
	case isBroadcast(remote):
		res.Ignore("broadcast")
		return nil
	}
	id, err := provider.ID("data.key.id", d.Key.ID.String())
	if err != nil {
		return err
	}
	chat, sender := d.Key.chatAndSender()
	key, err := provider.Key("data.key.remoteJid", instance, chat)
	if err != nil {
		return err
	}
	ts, err := provider.Timestamp("data.messageTimestamp", longToNumber(d.MessageTimestamp))
	if err != nil {
		return err
	}
	msg := batch.Message{
		ID:         id,
		ReceivedAt: batch.FormatTime(receivedAt),
		Timestamp:  ts,
		Source:     Source,
		From:       sender,
		To:         instance,
	}
	meta := provider.Meta{}
	meta.Str("push_name", d.PushName)
	meta.Str("message_type", d.MessageType)
	meta.Str("instance_id", d.InstanceID.String())
	meta.Str("device", d.Source)
	if isGroup(remote) {
		meta.Str("group_jid", remote)
		meta.Str("participant", d.Key.Participant.String())
	} else if chat != remote {
		meta.Str("remote_jid", remote) // the LID the chat is addressed by
	}
	if err := content(d.Message, d.MessageType, d.ContextInfo, &msg, meta); err != nil {
		return err
	}
	msg.Metadata = meta.JSON()
	res.Envelopes = append(res.Envelopes, ingest.Envelope{Key: key, Message: msg})
	return nil
}

// longToNumber turns a protobuf Long ({low, high, unsigned}) into a JSON
// number; anything else is returned as it is.
func longToNumber(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || raw[0] != '{' {
		return raw
	}
	var l struct {
		Low  *int64 `json:"low"`
		High *int64 `json:"high"`
	}
	if json.Unmarshal(raw, &l) != nil || l.Low == nil || l.High == nil {
		return raw
	}
	return json.RawMessage(fmt.Sprint(*l.High<<32 | int64(uint32(*l.Low))))
}

type presenceData struct {
	ID        provider.Str `json:"id"`
	Presences map[string]struct {
		LastKnownPresence string `json:"lastKnownPresence"`
	} `json:"presences"`
}

// presence turns "composing" or "recording" into one typing envelope for the
// chat; "available", "unavailable" and "paused" are counted and ignored.
func presence(res *provider.Result, instance string, raw json.RawMessage, receivedAt time.Time) error {
	var d presenceData
	if err := provider.Unmarshal("data", raw, &d); err != nil {
		return err
	}
	chat := d.ID.String()
	if isBroadcast(chat) {
		res.Ignore("broadcast")
		return nil
	}
	participants := make([]string, 0, len(d.Presences))
	for p := range d.Presences {
		participants = append(participants, p)
	}
	sort.Strings(participants)
	typing, state := "", ""
	for _, p := range participants {
		s := d.Presences[p].LastKnownPresence
		if s == "composing" || s == "recording" {
			if typing == "" {
				typing, state = p, s
			}
			continue
		}
		res.Ignore("presence:" + provider.Truncate(s, 32))
	}
	if typing == "" {
		return nil
	}
	key, err := provider.Key("data.id", instance, chat)
	if err != nil {
		return err
	}
	res.Envelopes = append(res.Envelopes, provider.Typing(Source, key, typing, instance, state, receivedAt))
	return nil
}
