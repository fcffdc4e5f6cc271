"""Feed documents for tests: RSS 2.0 and Atom, with the trouble real feeds bring."""

from __future__ import annotations

ZWNJ = "\u200c"

RSS = f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel>
<title>خبرگزاری آزمون</title>
<link>https://news.example.com/</link>
<item>
  <title>گزارش{ZWNJ}ها از برنامه هسته{ZWNJ}ای
  كره؛ ٣ نكته</title>
  <link>/world/nuclear-report?utm_source=rss</link>
  <guid isPermaLink="false">rss-1</guid>
  <pubDate>Thu, 26 Nov 2026 19:40:00 +0330</pubDate>
  <category>بین{ZWNJ}الملل</category>
  <dc:creator>مریم احمدی</dc:creator>
  <media:content url="/images/a.jpg" medium="image"/>
  <description><![CDATA[<p onclick="x()">متن <script>alert(1)</script>
  <a href="javascript:alert(2)">بد</a> <a href="/more">بیشتر</a></p>]]></description>
</item>
<item>
  <title>همان خبر با نشانی ردیابی</title>
  <link>https://news.example.com/world/nuclear-report?utm_medium=feed&amp;fbclid=abc</link>
  <guid isPermaLink="false">rss-1-copy</guid>
  <pubDate>Thu, 26 Nov 2026 19:45:00 +0330</pubDate>
  <description>تکرار</description>
</item>
<item>
  <title>خبر بی{ZWNJ}تاریخ</title>
  <link>https://news.example.com/no-date</link>
  <guid isPermaLink="false">rss-3</guid>
  <description>خبری که تاریخ ندارد</description>
</item>
<item>
  <title>خبر تکراری با همان شناسه</title>
  <link>https://news.example.com/other-url</link>
  <guid isPermaLink="false">rss-3</guid>
  <pubDate>Wed, 25 Nov 2026 10:00:00 +0000</pubDate>
</item>
<item>
  <title>بدون نشانی</title>
  <link>javascript:alert(1)</link>
</item>
</channel>
</rss>
"""

ATOM = f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="fa">
<title>اتم آزمون</title>
<link href="https://atom.example.com/"/>
<id>urn:test:atom</id>
<updated>2026-11-26T10:00:00Z</updated>
<entry>
  <title type="html">&lt;b&gt;آغاز&lt;/b&gt; پیش{ZWNJ}فروش بليت</title>
  <link rel="alternate" href="https://atom.example.com/tickets"/>
  <id>tag:atom.example.com,2026:1</id>
  <published>2026-11-26T08:30:00+03:30</published>
  <updated>2026-11-26T09:00:00+03:30</updated>
  <author><name>علی رضایی</name></author>
  <category term="اقتصاد"/>
  <summary type="html">&lt;p&gt;فروش از ١٥ بهمن&lt;/p&gt;&lt;img src=x onerror=alert(1)&gt;</summary>
</entry>
<entry>
  <title>فقط تاریخ به{ZWNJ}روزرسانی</title>
  <link rel="alternate" href="https://atom.example.com/updated-only"/>
  <id>tag:atom.example.com,2026:2</id>
  <updated>2026-11-25T12:00:00Z</updated>
  <summary>متن</summary>
</entry>
</feed>
"""
