package cards

import "fmt"

// LimitView is what a rate-limit card says: whose limit (the asker's, or
// the chat's), how many questions per how many seconds, and when to ask
// again.
type LimitView struct {
	Chat          bool
	Max           int
	PerSeconds    int
	RetryAfterSec int
}

// Limit tells the asker a limit was reached and when to ask again, with a
// retry button for then. It is sent once per window; later questions in
// the window get no answer, so the card says so.
func Limit(n LimitView, question, conv string) []byte {
	who := "你提问有点快"
	if n.Chat {
		who = "这个会话里的提问有点多"
	}
	return render(newCard("请稍后再问", "orange", "提问太频繁了",
		md(fmt.Sprintf("%s：%s最多回答 %d 个问题。请 %s后再问，或到时点击重试。", who, perText(n.PerSeconds), n.Max, waitText(n.RetryAfterSec))),
		plainDiv("问题："+Truncate(question, MaxQuestion)),
		note("在此之前的其他提问不会再单独回复。"),
		buttonRow(button("🔄 重试", "primary", Value{Action: ActionRetry, Q: Truncate(question, MaxQuestion), Conv: conv})),
	))
}

// LimitToast is the toast answering a limited click.
func LimitToast(n LimitView) string {
	return fmt.Sprintf("提问太频繁了，请 %s后再试", waitText(n.RetryAfterSec))
}

func perText(seconds int) string {
	switch seconds {
	case 1:
		return "每秒"
	case 60:
		return "每分钟"
	case 3600:
		return "每小时"
	case 86400:
		return "每天"
	}
	return "每 " + waitText(seconds)
}

func waitText(seconds int) string {
	switch {
	case seconds < 1:
		return "片刻"
	case seconds < 120:
		return fmt.Sprintf("%d 秒", seconds)
	case seconds < 7200:
		return fmt.Sprintf("%d 分钟", (seconds+59)/60)
	}
	return fmt.Sprintf("%d 小时", (seconds+3599)/3600)
}
