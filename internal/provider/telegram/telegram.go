// Package telegram reads Telegram Bot API webhooks: one Update per request.
// message becomes a message, callback_query (a button press) an
// interactive message, and edited_message a message marked
// metadata.edited (see the README); every other update is counted and
// ignored. Telegram sends no typing events.
//
// Conversation key: "<chat.id>"; a group is one conversation, and each
// message's From is the participant's from.id. The message id is the
// update_id, increasing and unique per bot: Telegram's retry of an update
// is stored once.
package telegram

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider"
)

// Source names this provider in every message.
const Source = "telegram"

type update struct {
	UpdateID      json.RawMessage `json:"update_id"`
	Message       *message        `json:"message"`
	EditedMessage *message        `json:"edited_message"`
	CallbackQuery *callbackQuery  `json:"callback_query"`
}

type chat struct {
	ID       provider.Str `json:"id"`
	Type     string       `json:"type"`
	Title    string       `json:"title"`
	Username string       `json:"username"`
}

type user struct {
	ID           provider.Str `json:"id"`
	IsBot        bool         `json:"is_bot"`
	FirstName    string       `json:"first_name"`
	LastName     string       `json:"last_name"`
	Username     string       `json:"username"`
	LanguageCode string       `json:"language_code"`
}

type file struct {
	FileID       provider.Str `json:"file_id"`
	FileUniqueID provider.Str `json:"file_unique_id"`
	FileSize     provider.Num `json:"file_size"`
	Width        provider.Num `json:"width"`
	Height       provider.Num `json:"height"`
	Duration     provider.Num `json:"duration"`
	MimeType     string       `json:"mime_type"`
	FileName     string       `json:"file_name"`
	IsAnimated   bool         `json:"is_animated"`
	IsVideo      bool         `json:"is_video"`
	Emoji        string       `json:"emoji"`
}

type message struct {
	MessageID      provider.Str    `json:"message_id"`
	Date           json.RawMessage `json:"date"`
	EditDate       json.RawMessage `json:"edit_date"`
	Chat           *chat           `json:"chat"`
	From           *user           `json:"from"`
	Text           string          `json:"text"`
	Caption        string          `json:"caption"`
	MediaGroupID   provider.Str    `json:"media_group_id"`
	ReplyToMessage *struct {
		MessageID provider.Str `json:"message_id"`
	} `json:"reply_to_message"`
	Photo     []file `json:"photo"`
	Voice     *file  `json:"voice"`
	Audio     *file  `json:"audio"`
	Video     *file  `json:"video"`
	VideoNote *file  `json:"video_note"`
	Animation *file  `json:"animation"`
	Document  *file  `json:"document"`
	Sticker   *file  `json:"sticker"`
	Location  *struct {
		Latitude  provider.Num `json:"latitude"`
		Longitude provider.Num `json:"longitude"`
	} `json:"location"`
	Contact *struct {
		PhoneNumber string       `json:"phone_number"`
		FirstName   string       `json:"first_name"`
		LastName    string       `json:"last_name"`
		UserID      provider.Str `json:"user_id"`
		Vcard       string       `json:"vcard"`
	} `json:"contact"`
}

type callbackQuery struct {
	ID      provider.Str `json:"id"`
	From    *user        `json:"from"`
	Message *message     `json:"message"`
	Data    string       `json:"data"`
}

// ignorable are the Update fields lull counts and ignores by name.
var ignorable = []string{"channel_post", "edited_channel_post", "inline_query", "chosen_inline_result",
	"shipping_query", "pre_checkout_query", "poll", "poll_answer", "my_chat_member", "chat_member",
	"chat_join_request", "message_reaction", "message_reaction_count", "business_message"}

// Parse reads a webhook body. receivedAt is the time of receipt.
func Parse(body []byte, receivedAt time.Time) (provider.Result, error) {
	var res provider.Result
	var u update
	if err := provider.Decode(body, &u); err != nil {
		return res, fmt.Errorf("telegram update: %w", err)
	}
	id, err := updateID(u.UpdateID)
	if err != nil {
		return res, err
	}
	var env ingest.Envelope
	switch {
	case u.Message != nil:
		env, err = fromMessage(id, u.Message, receivedAt)
	case u.EditedMessage != nil:
		env, err = fromMessage(id, u.EditedMessage, receivedAt)
		if err == nil {
			env.Message.Metadata = markEdited(env.Message.Metadata, u.EditedMessage.EditDate)
		}
	case u.CallbackQuery != nil:
		if u.CallbackQuery.Message == nil || u.CallbackQuery.Message.Chat == nil {
			res.Ignore("callback_query:inline") // a button of an inline message: no chat to key
			return res, nil
		}
		env, err = fromCallback(id, u.CallbackQuery, receivedAt)
	default:
		res.Ignore("update:" + otherKind(body))
		return res, nil
	}
	if err != nil {
		return provider.Result{}, fmt.Errorf("telegram update %s: %w", id, err)
	}
	res.Envelopes = append(res.Envelopes, env)
	return res, nil
}

// updateID reads update_id: a non-negative integer.
func updateID(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", &ingest.FieldError{Field: "update_id", Problem: "is required"}
	}
	n, err := strconv.ParseUint(string(raw), 10, 63)
	if err != nil {
		return "", &ingest.FieldError{Field: "update_id", Problem: "must be a non-negative integer"}
	}
	return strconv.FormatUint(n, 10), nil
}

// otherKind names the first field of an update lull does not read.
func otherKind(body []byte) string {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(body, &m)
	for _, k := range ignorable {
		if _, ok := m[k]; ok {
			return k
		}
	}
	return "other"
}

func fromMessage(id string, m *message, receivedAt time.Time) (ingest.Envelope, error) {
	if m.Chat == nil {
		return ingest.Envelope{}, &ingest.FieldError{Field: "message.chat", Problem: "is required"}
	}
	key, err := provider.Key("message.chat.id", m.Chat.ID.String())
	if err != nil {
		return ingest.Envelope{}, err
	}
	ts, err := provider.Timestamp("message.date", m.Date)
	if err != nil {
		return ingest.Envelope{}, err
	}
	msg := batch.Message{
		ID:         id,
		ReceivedAt: batch.FormatTime(receivedAt),
		Timestamp:  ts,
		Source:     Source,
		From:       m.Chat.ID.String(),
	}
	meta := provider.Meta{}
	meta.Str("message_id", m.MessageID.String())
	chatMeta(meta, m.Chat)
	if m.From != nil {
		msg.From = m.From.ID.String()
		userMeta(meta, m.From)
	}
	if m.ReplyToMessage != nil {
		msg.ReplyTo = m.ReplyToMessage.MessageID.String()
	}
	meta.Str("media_group_id", m.MediaGroupID.String())
	content(m, &msg, meta)
	msg.Metadata = meta.JSON()
	return ingest.Envelope{Key: key, Message: msg}, nil
}

func fromCallback(id string, q *callbackQuery, receivedAt time.Time) (ingest.Envelope, error) {
	key, err := provider.Key("callback_query.message.chat.id", q.Message.Chat.ID.String())
	if err != nil {
		return ingest.Envelope{}, err
	}
	msg := batch.Message{
		ID:         id,
		Text:       q.Data,
		Type:       batch.TypeInteractive,
		ReceivedAt: batch.FormatTime(receivedAt),
		Source:     Source,
		From:       q.Message.Chat.ID.String(),
		ReplyTo:    q.Message.MessageID.String(),
	}
	meta := provider.Meta{}
	meta.Str("callback_query_id", q.ID.String())
	meta.Str("reply_id", q.Data)
	chatMeta(meta, q.Message.Chat)
	if q.From != nil {
		msg.From = q.From.ID.String()
		userMeta(meta, q.From)
	}
	msg.Metadata = meta.JSON()
	return ingest.Envelope{Key: key, Message: msg}, nil
}

func chatMeta(meta provider.Meta, c *chat) {
	meta.Str("chat_type", c.Type)
	meta.Str("chat_title", c.Title)
}

func userMeta(meta provider.Meta, u *user) {
	meta.Str("first_name", u.FirstName)
	meta.Str("last_name", u.LastName)
	meta.Str("username", u.Username)
	meta.Str("language_code", u.LanguageCode)
	meta.True("is_bot", u.IsBot)
}

// markEdited adds edited (and edit_date) to a message's metadata.
func markEdited(meta json.RawMessage, editDate json.RawMessage) json.RawMessage {
	m := provider.Meta{}
	_ = json.Unmarshal(meta, &m)
	m["edited"] = true
	if ts, err := provider.Timestamp("edit_date", editDate); err == nil {
		m.Str("edit_date", ts)
	}
	return m.JSON()
}
