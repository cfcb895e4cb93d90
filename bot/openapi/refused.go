package openapi

import "errors"

// Codes Feishu answers when it refuses a card for what is in it.
const (
	// CodeCardContent is "Failed to create card content", with the reason as
	// a sub-code in msg (ext=ErrCode: 200570 for image keys, 11310 for
	// limits, …), on send, reply and patch
	// (https://open.feishu.cn/document/server-docs/im-v1/message/create,
	// "230099 子错误码"; the same table on im-v1/message/reply and
	// im-v1/message/patch). The CardKit pages do not list it, but Feishu
	// answers it there too (the official plugin, larksuite/openclaw-lark,
	// handles it from CardKit calls).
	CodeCardContent = 230099
	// CodeMessageTooLarge is "The length of the message content reaches its
	// limit": a card over 30 KB on send, reply and patch (same pages).
	CodeMessageTooLarge = 230025
	// CodeCardTooLarge is CardKit's "Card content exceeds limit", over 30 KB
	// (https://open.feishu.cn/document/cardkit-v1/card/create and the
	// other card and element pages).
	CodeCardTooLarge = 200860
	// CodeCardBuild is CardKit's "Failed to generate card content"
	// (cardkit-v1/card/create, card/update, card-element/content): the card
	// could not be built from what it says.
	CodeCardBuild = 200220
)

// contentCodes are 230099's sub-codes the send page lists, in case one
// comes back as the code itself (the pages show it only inside msg): card
// JSON (200621), template variables (200732, 200737), chart spec (200550),
// a JSON 1.0 tag in 2.0 (200861), image keys (200570), table component
// rows (200914, 200915), audio (300240, 300230, 300220) and limits (11310).
var contentCodes = map[int]bool{
	CodeCardContent: true, CodeMessageTooLarge: true, CodeCardTooLarge: true, CodeCardBuild: true,
	200621: true, 200732: true, 200737: true, 200550: true, 200861: true, 200570: true,
	200914: true, 200915: true, 300240: true, 300230: true, 300220: true, 11310: true,
}

// IsContentRefused reports whether err is Feishu refusing a card for what
// it contains or its size, rather than for whom or when it was sent: the
// same answer as a plain card (cards.PlainAnswer) may then go through,
// while a retry of the same card would not.
func IsContentRefused(err error) bool {
	ae, ok := errors.AsType[*Error](err)
	return ok && contentCodes[ae.Code]
}
