package feishufake

// GenerateWiki: whole wiki spaces of plausible documents, for benchmarks
// and load tests of the sync.

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// WikiSpec says what GenerateWiki builds.
type WikiSpec struct {
	SpaceID, Name string
	// Docs is how many docx documents the space holds.
	Docs int
	// FanOut is how many children a node gets before the next one does
	// (0: 5), and Depth how many levels the tree has at most (0: 3). When
	// the tree is full, another top-level node starts a new one.
	FanOut, Depth int
	// Sections is how many second-level sections a document has (0: 4).
	Sections int
	// Seed makes the space: the same spec builds the same space.
	Seed uint64
}

// GeneratedDoc is one document GenerateWiki made.
type GeneratedDoc struct {
	Node, DocumentID, Title string
	Depth                   int // 1 for the top level
}

// GenerateWiki adds spec's space to s, its documents filled breadth
// first, and returns them in the order they were made.
func GenerateWiki(s *Server, spec WikiSpec) []GeneratedDoc {
	fanOut, depth, sections := cmpOr(spec.FanOut, 5), cmpOr(spec.Depth, 3), cmpOr(spec.Sections, 4)
	rng := rand.New(rand.NewPCG(spec.Seed, spec.Seed^0x9e3779b97f4a7c15))
	s.AddSpace(spec.SpaceID, spec.Name)
	type slot struct {
		node  string
		depth int
	}
	queue := []slot{{"", 0}} // parents with room, breadth first
	children := map[string]int{}
	var out []GeneratedDoc
	for i := range spec.Docs {
		for len(queue) > 0 && children[queue[0].node] >= fanOut {
			queue = queue[1:]
		}
		p := slot{"", 0} // the tree is full: a new subtree at the top
		if len(queue) > 0 {
			p = queue[0]
		}
		title := fmt.Sprintf("%s %d", topics[rng.IntN(len(topics))], i+1)
		node, doc := s.AddDocx(spec.SpaceID, p.node, title, generateBody(rng, sections)...)
		out = append(out, GeneratedDoc{Node: node, DocumentID: doc, Title: title, Depth: p.depth + 1})
		children[p.node]++
		if p.depth+1 < depth {
			queue = append(queue, slot{node, p.depth + 1})
		}
	}
	return out
}

func cmpOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

var topics = []string{"部署指南", "故障排查手册", "新人入职", "接口规范", "发布流程", "值班说明", "数据库运维", "权限申请", "监控告警", "架构概览"}

var headings = []string{"概述", "背景", "前置条件", "安装步骤", "配置说明", "常见问题", "注意事项", "回滚方案", "参考资料", "附录"}

var subheadings = []string{"环境变量", "日志位置", "排查思路", "示例", "限制"}

var sentences = []string{
	"服务启动前需要确认 Redis 与 Qdrant 都已就绪。",
	"配置文件位于仓库根目录的 deploy 目录下，修改后需要重启进程。",
	"如果接口返回 99991400，说明触发了频控，应等待响应头中给出的秒数后重试。",
	"发布窗口为每周二和周四的下午，紧急修复需要值班负责人审批。",
	"所有变更都要先在预发环境验证，再灰度到百分之十的流量。",
	"日志默认保留七天，超过期限的日志会被自动归档到对象存储。",
	"新成员入职第一周需要完成权限申请，并阅读本空间的架构概览。",
	"数据库连接池的上限默认为 64，高峰期可以临时调到 128。",
	"告警规则按服务划分，每条规则都要写明负责人和升级路径。",
	"The health check endpoint returns 200 once every dependency answers.",
	"回滚时先停止新版本的流量，再恢复上一个镜像标签。",
	"知识库的同步任务每小时运行一次，只处理有改动的文档。",
	"接口的分页大小上限为 50，调用方需要根据 has_more 继续翻页。",
	"Use the staging cluster for load tests; production quotas are shared.",
	"遇到权限错误时，请先确认应用已被添加为知识空间成员。",
	"每个版本的变更说明都记录在发布页面，包含影响范围和回滚步骤。",
}

var items = []string{"检查依赖服务状态", "更新配置并提交评审", "执行数据库迁移", "观察监控面板十分钟", "通知相关同学", "补充文档和变更记录"}

var snippets = []string{
	"kubectl rollout status deploy/kbbot -n prod",
	"redis-cli -u \"$KBBOT_REDIS\" ping",
	"SELECT id, title FROM documents WHERE updated_at > now() - interval '1 day';",
	"go test -race ./...",
}

func paragraph(rng *rand.Rand) Block {
	n := 2 + rng.IntN(3)
	var sb strings.Builder
	for range n {
		sb.WriteString(sentences[rng.IntN(len(sentences))])
	}
	return Text(Run(sb.String()))
}

// generateBody is one document: an introduction, then sections of
// paragraphs, now and then a sub-section, a list, a code block or a table.
func generateBody(rng *rand.Rand, sections int) []Block {
	body := []Block{paragraph(rng)}
	start := rng.IntN(len(headings))
	for i := range sections {
		body = append(body, Heading(2, Run(headings[(start+i)%len(headings)])))
		for range 1 + rng.IntN(3) {
			body = append(body, paragraph(rng))
		}
		switch rng.IntN(8) {
		case 0, 1:
			body = append(body, Heading(3, Run(subheadings[rng.IntN(len(subheadings))])), paragraph(rng))
		case 2, 3:
			for range 3 {
				body = append(body, Bullet(Run(items[rng.IntN(len(items))])))
			}
		case 4:
			body = append(body, Code(7, snippets[rng.IntN(len(snippets))]))
		case 5:
			body = append(body, Table(2, TextCells("步骤", "负责人", items[rng.IntN(len(items))], "值班同学", items[rng.IntN(len(items))], "发布负责人")...))
		}
	}
	return body
}
