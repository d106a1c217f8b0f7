// Package zapi reads Z-API webhooks: one callback per request, told apart
// by its "type". ReceivedCallback becomes a message (fromMe skipped: the
// "received and sent by me" webhook carries the bot's own messages too),
// PresenceChatCallback with COMPOSING or RECORDING a typing hint; every
// other callback (delivery, status, connection, …) is counted and ignored.
//
// Conversation key: "<instanceId>:<phone>", phone being the chat (the
// user's number, or a group's id). A group is one conversation; each
// message's From names the participant (participantPhone).
package zapi

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
const Source = "zapi"

// Callback types lull acts on.
const (
	TypeReceived = "ReceivedCallback"
	TypePresence = "PresenceChatCallback"
)

// callback is the union of the callbacks lull reads.
type callback struct {
	Type             string          `json:"type"`
	InstanceID       provider.Str    `json:"instanceId"`
	Phone            provider.Str    `json:"phone"`
	MessageID        provider.Str    `json:"messageId"`
	FromMe           bool            `json:"fromMe"`
	Momment          json.RawMessage `json:"momment"`
	IsGroup          bool            `json:"isGroup"`
	IsNewsletter     bool            `json:"isNewsletter"`
	IsStatusReply    bool            `json:"isStatusReply"`
	IsEdit           bool            `json:"isEdit"`
	Broadcast        bool            `json:"broadcast"`
	WaitingMessage   bool            `json:"waitingMessage"`
	Forwarded        bool            `json:"forwarded"`
	ConnectedPhone   provider.Str    `json:"connectedPhone"`
	ParticipantPhone provider.Str    `json:"participantPhone"`
	SenderName       string          `json:"senderName"`
	ChatName         string          `json:"chatName"`
	SenderLid        provider.Str    `json:"senderLid"`
	RefMessageID     provider.Str    `json:"referenceMessageId"`
	Status           string          `json:"status"` // PresenceChatCallback: COMPOSING, …

}

// Parse reads a webhook body. receivedAt is the time of receipt.
func Parse(body []byte, receivedAt time.Time) (provider.Result, error) {
	var res provider.Result
	var cb callback
	if err := provider.Decode(body, &cb); err != nil {
		return res, fmt.Errorf("zapi callback: %w", err)
	}
	switch cb.Type {
	case TypeReceived:
		if err := received(&res, &cb, body, receivedAt); err != nil {
			return provider.Result{}, fmt.Errorf("zapi %s: %w", cb.Type, err)
		}
	case TypePresence:
		if err := presence(&res, &cb, receivedAt); err != nil {
			return provider.Result{}, fmt.Errorf("zapi %s: %w", cb.Type, err)
		}
	case "":
		return res, &ingest.FieldError{Field: "type", Problem: "is required"}
	default:
		res.Ignore("type:" + provider.Truncate(cb.Type, 64))
	}
	return res, nil
}

func received(res *provider.Result, cb *callback, body []byte, receivedAt time.Time) error {
	switch {
	case cb.FromMe:
		res.Ignore("from_me")
		return nil
	case cb.IsNewsletter || cb.Broadcast || cb.IsStatusReply:
		res.Ignore("broadcast")
		return nil
	case cb.WaitingMessage:
		// WhatsApp's "waiting for this message" placeholder: the message
		// itself comes later, under its own callback.
		res.Ignore("waiting_message")
		return nil
	}
	id, err := provider.ID("messageId", cb.MessageID.String())
	if err != nil {
		return err
	}
	instance, phone := cb.InstanceID.String(), cb.Phone.String()
	key, err := provider.Key("instanceId", instance, phone)
	if err != nil {
		return err
	}
	ts, err := provider.Timestamp("momment", cb.Momment) // milliseconds
	if err != nil {
		return err
	}
	msg := batch.Message{
		ID:         id,
		ReceivedAt: batch.FormatTime(receivedAt),
		Timestamp:  ts,
		Source:     Source,
		From:       phone,
		To:         cb.ConnectedPhone.String(),
		ReplyTo:    cb.RefMessageID.String(),
	}
	meta := provider.Meta{}
	meta.Str("sender_name", cb.SenderName)
	meta.Str("chat_name", cb.ChatName)
	meta.Str("sender_lid", cb.SenderLid.String())
	meta.True("forwarded", cb.Forwarded)
	meta.True("edited", cb.IsEdit)
	if cb.IsGroup || strings.HasSuffix(phone, "-group") {
		meta.Str("group_id", phone)
		if p := cb.ParticipantPhone.String(); p != "" {
			msg.From = p
		}
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(body, &all); err != nil {
		return fmt.Errorf("%w: %v", ingest.ErrMalformed, err)
	}
	if err := content(all, &msg, meta); err != nil {
		return err
	}
	msg.Metadata = meta.JSON()
	res.Envelopes = append(res.Envelopes, ingest.Envelope{Key: key, Message: msg})
	return nil
}

// presence turns COMPOSING or RECORDING into a typing hint; the rest
// (PAUSED, AVAILABLE, UNAVAILABLE) is counted and ignored.
func presence(res *provider.Result, cb *callback, receivedAt time.Time) error {
	status := strings.ToUpper(strings.TrimSpace(cb.Status))
	if status != "COMPOSING" && status != "RECORDING" {
		res.Ignore("presence:" + provider.Truncate(strings.ToLower(status), 32))
		return nil
	}
	instance, phone := cb.InstanceID.String(), cb.Phone.String()
	key, err := provider.Key("instanceId", instance, phone)
	if err != nil {
		return err
	}
	res.Envelopes = append(res.Envelopes, provider.Typing(Source, key, phone, instance, strings.ToLower(status), receivedAt))
	return nil
}
