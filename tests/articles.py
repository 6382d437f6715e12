# ruff: noqa: E501  (the pages are HTML as sites write it, long lines and all)
"""Chinese news article pages written for the tests and the extractor measurement
(bench/extractors.py): each is an article with what real news sites put around it
(navigation, breadcrumbs, related links, ads, share buttons, comments, footers), in a
layout of its own. `text` is the article as a reader sees it; `chrome` holds strings of
what surrounds it, none of which may end up in an extracted article."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Article:
    name: str
    html: str
    paragraphs: tuple[str, ...]
    chrome: tuple[str, ...]  # navigation, related links, ads, comments: never article text
    encoding: str = "utf-8"

    @property
    def text(self) -> str:
        return "".join(self.paragraphs)

    @property
    def body(self) -> bytes:
        return self.html.encode(self.encoding)


def _p(paragraphs: tuple[str, ...]) -> str:
    return "\n".join(f"<p>{p}</p>" for p in paragraphs)


NAV = ("首页", "陕西新闻", "国内国际", "财经观察", "文化旅游", "视频直播")
NAV_HTML = "".join(f'<li><a href="/c{n}/">{name}</a></li>' for n, name in enumerate(NAV))

# 1. A Sanqin-style page in GBK: top navigation, breadcrumbs, a sidebar of hot news,
# a comment section and a footer.
SANQIN = (
    "12月23日，记者从宝鸡市公安局交通警察支队获悉，受持续降雪天气影响，宝鸡市区及周边部分路段出现道路结冰现象，"
    "交警部门已启动恶劣天气应急预案，全力保障群众安全出行。",
    "据介绍，目前连霍高速宝鸡段、宝平高速部分路段实行临时交通管制，大型货车禁止通行，小型客车限速每小时四十公里。"
    "交警提醒，驾驶人出行前应提前了解路况信息，合理规划出行路线，尽量避开山区道路和急弯陡坡路段。",
    "同时，宝鸡交警在市区主要路口增派警力，对结冰路段撒布融雪剂，并联合环卫部门及时清扫积雪，"
    "确保主干道路畅通。截至23日晚，全市未发生因降雪引发的重大交通事故。",
    "交警部门提示广大市民，雪天出行尽量乘坐公共交通工具，步行时注意防滑，不要在机动车道内行走。"
    "如遇紧急情况，请及时拨打122报警电话求助。",
)
SANQIN_CHROME = (
    *NAV,
    "当前位置",
    "热点推荐",
    "西安地铁14号线新增站点开通运营",
    "渭南冬季供暖全面启动",
    "网友评论",
    "交警同志辛苦了，雪天注意安全！",
    "我们小区门口的路还没有扫，希望尽快处理。",
    "版权所有 三秦都市报社",
)
SANQIN_HTML = f"""<!DOCTYPE html>
<html><head><meta http-equiv="Content-Type" content="text/html; charset=gbk">
<title>宝鸡交警：雪天路滑，这些路段请绕行_三秦都市报</title>
<script>var _hmt = _hmt || [];</script></head>
<body>
<div class="header"><ul class="nav">{NAV_HTML}</ul></div>
<div class="crumbs">当前位置：<a href="/">首页</a> &gt; <a href="/sx/">陕西新闻</a> &gt; 正文</div>
<div class="wrap">
  <div class="left">
    <h1>宝鸡交警：雪天路滑，这些路段请绕行</h1>
    <div class="info">2021-12-24 03:00 来源：三秦都市报 编辑：张强</div>
    <div class="article-content">
{_p(SANQIN)}
    </div>
    <div class="share">分享到：<a href="#">微信</a> <a href="#">微博</a></div>
    <div class="comments"><h3>网友评论</h3>
      <div class="comment"><span class="user">西安网友</span><p>交警同志辛苦了，雪天注意安全！</p></div>
      <div class="comment"><span class="user">宝鸡网友</span><p>我们小区门口的路还没有扫，希望尽快处理。</p></div>
    </div>
  </div>
  <div class="right"><h3>热点推荐</h3><ul>
    <li><a href="/a/1.html">西安地铁14号线新增站点开通运营</a></li>
    <li><a href="/a/2.html">渭南冬季供暖全面启动</a></li></ul></div>
</div>
<div class="footer">版权所有 三秦都市报社 陕ICP备00000000号</div>
</body></html>"""

# 2. An old portal: the article inside layout tables, related news under it.
TABLES = (
    "12月22日上午，渭南市召开冬季安全生产工作会议，全面安排部署岁末年初安全生产各项工作。"
    "会议要求，各县市区、各部门要牢固树立安全发展理念，切实把安全生产摆在更加突出的位置。",
    "会议指出，当前正值岁末年初，各类生产经营活动频繁，人员流动量大，火灾、道路交通、燃气等领域风险叠加，"
    "安全生产形势复杂严峻。各级各部门要压紧压实安全生产责任，深入开展隐患排查整治。",
    "会议强调，要聚焦重点行业领域，加强危险化学品、矿山、建筑施工、消防等方面的监管执法，"
    "严厉打击非法违法生产经营行为，坚决防范遏制重特大事故发生，确保全市安全生产形势持续稳定。",
)
TABLES_CHROME = (
    "本地", "国内", "国际", "相关新闻", "华州区新建三所幼儿园", "蒲城县冬枣喜获丰收",
    "关于我们", "联系方式", "渭南新闻网版权所有",
)  # fmt: skip
TABLES_HTML = f"""<html><head><meta charset="utf-8"><title>渭南市召开冬季安全生产会议 - 渭南新闻网</title></head>
<body>
<table width="980" align="center"><tr><td colspan="2">
  <table width="100%"><tr><td><a href="/bd/">本地</a> | <a href="/gn/">国内</a> | <a href="/gj/">国际</a></td></tr></table>
</td></tr>
<tr><td width="700" valign="top">
  <table width="100%"><tr><td align="center" class="title"><b>渭南市召开冬季安全生产会议</b></td></tr>
  <tr><td align="center" class="date">2021-12-24 来源：渭南日报</td></tr>
  <tr><td class="content">
{_p(TABLES)}
  </td></tr>
  <tr><td class="related"><b>相关新闻</b><br>
    · <a href="/a/100.htm">华州区新建三所幼儿园</a><br>
    · <a href="/a/99.htm">蒲城县冬枣喜获丰收</a></td></tr></table>
</td>
<td width="280" valign="top"><table><tr><td><img src="/ad/banner.gif" alt="广告"></td></tr></table></td></tr>
<tr><td colspan="2" align="center"><a href="/about/">关于我们</a> | <a href="/contact/">联系方式</a><br>渭南新闻网版权所有</td></tr>
</table></body></html>"""

# 3. A modern page: <article>, share buttons, an editor line, many comments.
MODERN = (
    "西安地铁14号线贺韶村站于12月23日正式开通运营，这是14号线开通以来新增的第一座车站。"
    "贺韶村站位于西安国际港务区，车站周边分布有多个大型居住小区和商业综合体。",
    "据西安市轨道交通集团有限公司介绍，贺韶村站为地下两层岛式车站，共设置三个出入口，"
    "乘客可通过站内换乘通道方便地前往周边各个区域。新站开通后，沿线群众出行将更加便利。",
    "运营首日，不少市民专程前来体验。家住附近的王女士说，以前去市中心要先坐公交再换乘地铁，"
    "现在出门步行几分钟就能坐上地铁，大大节省了通勤时间。",
    "轨道集团表示，将持续优化运营组织，根据客流变化适时调整行车间隔，为市民提供安全、便捷、舒适的乘车服务。",
)
MODERN_CHROME = (
    *NAV,
    "责任编辑",
    "扫码关注我们",
    "全部评论（3）",
    "终于开通了，上班方便多了！",
    "希望早点把末班车时间延长。",
    "站内指示牌有点少，第一次去找了半天出口。",
    "猜你喜欢",
    "西安今冬首场降雪来了",
)
MODERN_HTML = f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<title>西安地铁14号线新增站点开通运营</title></head>
<body>
<header><nav><ul>{NAV_HTML}</ul></nav></header>
<main>
<article>
  <h1>西安地铁14号线新增站点开通运营</h1>
  <div class="meta"><time datetime="2021-12-23T18:30:00+08:00">2021-12-23 18:30</time> 三秦都市报</div>
  <div class="article-body">
{_p(MODERN)}
  </div>
  <p class="editor">责任编辑：李华</p>
</article>
<aside class="share"><button>微信</button><button>微博</button><img src="/qr.png" alt="">扫码关注我们</aside>
<section id="comments"><h2>全部评论（3）</h2>
  <ul>
    <li><b>用户8812</b><p>终于开通了，上班方便多了！</p><span>12-23 19:02</span></li>
    <li><b>长安夜雨</b><p>希望早点把末班车时间延长。</p><span>12-23 19:40</span></li>
    <li><b>小陈</b><p>站内指示牌有点少，第一次去找了半天出口。</p><span>12-23 20:11</span></li>
  </ul>
</section>
<section class="recommend"><h2>猜你喜欢</h2><a href="/n/3.html">西安今冬首场降雪来了</a></section>
</main>
<footer>© 2021 三秦都市报</footer>
</body></html>"""

# 4. Images with captions, and an ad and "further reading" inside the article's column.
IMAGES = (
    "12月20日，汉中市气象台发布寒潮蓝色预警信号：受强冷空气影响，预计未来48小时全市气温将下降8℃以上，"
    "最低气温可达零下5℃，并伴有4至5级偏北风。",
    "气象部门提醒，寒潮期间请注意防寒保暖，设施农业应做好大棚加固和保温工作，"
    "畜牧养殖户要及时加固圈舍，储备足够饲草料，防止牲畜受冻。",
    "交通运输部门表示，将密切关注天气变化，提前做好道路除冰保畅准备，山区道路将视情况实施交通管制。"
    "请过往驾驶人减速慢行，注意行车安全。",
)
IMAGES_CHROME = ("限时优惠", "点击领取新人红包", "延伸阅读", "汉中油菜花节明年三月开幕", "返回顶部")
IMAGES_HTML = f"""<html><head><meta charset="utf-8"><title>汉中发布寒潮蓝色预警</title></head>
<body>
<div id="top"><a href="/">首页</a></div>
<div id="main">
 <h1 class="title">汉中发布寒潮蓝色预警</h1>
 <div id="text">
  <p>{IMAGES[0]}</p>
  <div class="ad"><a href="http://ad.example.com/">限时优惠：点击领取新人红包</a></div>
  <p><img src="/img/cold.jpg" alt=""></p>
  <p>{IMAGES[1]}</p>
  <p>{IMAGES[2]}</p>
 </div>
 <div class="more"><h4>延伸阅读</h4><a href="/x/1.html">汉中油菜花节明年三月开幕</a></div>
</div>
<a href="#top" class="gotop">返回顶部</a>
</body></html>"""

# 5. A short article under a comment section longer than itself.
SHORT = (
    "记者从渭南市住建局获悉，自12月15日起，渭南城区集中供暖全面启动，覆盖居民小区三百余个，"
    "供热面积较去年增加一百二十万平方米。",
    "住建部门已开通供热服务热线，市民如遇室温不达标等问题，可拨打热线电话反映，相关部门将在二十四小时内上门处理。",
)
SHORT_COMMENTS = tuple(
    f"网友{n}：{text}"
    for n, text in enumerate(
        (
            "我家暖气到现在还是凉的，打了热线说明天来看看，希望能尽快解决问题。",
            "今年暖气挺热的，比去年强多了，给供热公司点个赞，辛苦了。",
            "老小区什么时候才能通上集中供暖？我们每年冬天都只能开空调取暖，电费太贵了。",
            "供暖费能不能降一点？退休工资就那么多，一个冬天下来负担挺重的。",
            "热线一直占线打不进去，建议增加几条线路，或者开通网上报修渠道方便大家。",
            "楼上楼下温差很大，顶楼住户太冷了，建议供热公司统一检查一下管网平衡问题。",
        )
    )
)
SHORT_CHROME = ("最新评论", *SHORT_COMMENTS, "我要评论")
SHORT_HTML = f"""<html><head><meta charset="utf-8"><title>渭南城区集中供暖全面启动</title></head>
<body>
<div class="nav">{NAV_HTML}</div>
<div class="news">
  <h2>渭南城区集中供暖全面启动</h2>
  <div class="news-txt">{_p(SHORT)}</div>
</div>
<div class="comment-box"><h3>最新评论</h3>
{"".join(f'<div class="item"><p>{c}</p><span class="reply">回复</span></div>' for c in SHORT_COMMENTS)}
<textarea></textarea><button>我要评论</button>
</div>
</body></html>"""

# 6. An older page: paragraphs as <br>-separated text in one <div>, no <p> at all.
BREAKS = (
    "12月21日，西安市文化和旅游局发布消息，大唐不夜城步行街将于元旦期间推出系列新春主题活动，"
    "包括灯光秀、非遗展演和特色美食市集等，活动将持续至明年正月十五。",
    "据了解，今年的新春活动以“长安年·中国年”为主题，设置了十二个主题展区，"
    "游客可以在现场体验剪纸、皮影、面花等陕西传统手工艺，感受浓浓的年味。",
    "文旅部门提醒，活动期间客流量较大，请游客合理安排出行时间，遵守现场秩序，做好个人防护。",
)
BREAKS_CHROME = (
    "网站首页",
    "旅游资讯",
    "上一篇：西安城墙灯会筹备工作启动",
    "下一篇：陕西历史博物馆延长开放时间",
)
BREAKS_HTML = f"""<html><head><meta charset="utf-8"><title>大唐不夜城推出新春主题活动</title></head>
<body>
<div class="topbar"><a href="/">网站首页</a> &gt; <a href="/ly/">旅游资讯</a></div>
<div class="bt">大唐不夜城推出新春主题活动</div>
<div id="endText">
{"<br><br>".join("　　" + p for p in BREAKS)}
</div>
<div class="page-nav"><a href="/ly/1.html">上一篇：西安城墙灯会筹备工作启动</a><br>
<a href="/ly/3.html">下一篇：陕西历史博物馆延长开放时间</a></div>
</body></html>"""

# 7. Related articles with summaries under the article: text as dense as the article's.
RELATED_SUMMARIES = (
    "延安市启动冬季旅游惠民活动，全市四十余家景区推出门票优惠，部分景区对六十岁以上老人免票。",
    "榆林市举办第二届冬季冰雪节，设置冰雕展、雪地摩托、冰上拔河等二十余项活动，吸引大批游客。",
    "安康市推出“冬游安康”精品线路，串联瀛湖、香溪洞、南宫山等景区，并推出温泉康养套餐。",
)
RELATED = (
    "12月19日，商洛市金丝峡景区冬季冰瀑景观吸引众多游客前来观赏。受持续低温天气影响，"
    "景区内多处瀑布凝结成冰，形成了晶莹剔透的冰挂奇观。",
    "景区负责人介绍，今年冬季景区新增了观景步道和休息驿站，并对游客中心进行了升级改造，"
    "游客可以通过手机预约购票，享受更加便捷的游览服务。",
)
RELATED_CHROME = ("相关阅读", *RELATED_SUMMARIES)
RELATED_HTML = f"""<html><head><meta charset="utf-8"><title>金丝峡冰瀑景观引客来</title></head>
<body>
<div class="nav">{NAV_HTML}</div>
<div class="article">
  <h1>金丝峡冰瀑景观引客来</h1>
  <div class="txt">{_p(RELATED)}</div>
</div>
<div class="related"><h3>相关阅读</h3>
{"".join(f'<div class="rel"><a href="/r/{n}.html">旅游资讯{n}</a><p>{s}</p></div>' for n, s in enumerate(RELATED_SUMMARIES))}
</div>
</body></html>"""

ARTICLES = (
    Article("sanqin-gbk", SANQIN_HTML, SANQIN, SANQIN_CHROME, encoding="gbk"),
    Article("layout-tables", TABLES_HTML, TABLES, TABLES_CHROME),
    Article("modern-comments", MODERN_HTML, MODERN, MODERN_CHROME),
    Article("images-ads", IMAGES_HTML, IMAGES, IMAGES_CHROME),
    Article("short-long-comments", SHORT_HTML, SHORT, SHORT_CHROME),
    Article("br-paragraphs", BREAKS_HTML, BREAKS, BREAKS_CHROME),
    Article("related-summaries", RELATED_HTML, RELATED, RELATED_CHROME),
)


def recall(article: Article, extracted: str) -> float:
    """The share of the article's characters (spaces aside) found, paragraph by
    paragraph, in the extracted text."""
    found = "".join(extracted.split())
    total = sum(len(p) for p in article.paragraphs)
    return sum(len(p) for p in article.paragraphs if "".join(p.split()) in found) / total


def leaks(article: Article, extracted: str) -> list[str]:
    """The surrounding strings that made it into the extracted text."""
    found = "".join(extracted.split())
    return [c for c in article.chrome if "".join(c.split()) in found]
