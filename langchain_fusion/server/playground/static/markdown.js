// Markdown to DOM nodes, safely: every piece of model text becomes a text node
// (textContent), never HTML, so an answer holding <script> or <img onerror> is shown as
// those characters and runs nothing. Links keep only http(s) URLs; images become links.

const INLINE =
  /(`+)([^`]+?)\1|\*\*(?!\s)(.+?)(?<!\s)\*\*|(?<![\w.])__(?![\s_])(.+?)(?<!\s)__(?!\w)|(?<![\w*])\*(?![\s*])(.+?)(?<!\s)\*|(?<![\w.])_(?![\s_])(.+?)(?<!\s)_(?!\w)|!?\[([^\]]*)\]\(([^()\s]+)(?:\s+"[^"]*")?\)|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/g;

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

export function safeUrl(raw) {
  try {
    const url = new URL(raw, "http://invalid.invalid/");
    if ((url.protocol === "http:" || url.protocol === "https:") && url.host !== "invalid.invalid") {
      return url.href;
    }
  } catch {
    /* not a URL */
  }
  return null;
}

export function link(href, text) {
  const a = el("a");
  a.href = href;
  a.textContent = text || href;
  a.target = "_blank";
  a.rel = "noopener noreferrer nofollow";
  return a;
}

export function appendInline(parent, text) {
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) parent.append(document.createTextNode(text.slice(last, m.index)));
    last = m.index + m[0].length;
    if (m[2] !== undefined) {
      const code = el("code");
      code.textContent = m[2];
      parent.append(code);
    } else if (m[3] !== undefined || m[4] !== undefined) {
      const strong = el("strong");
      appendInline(strong, m[3] ?? m[4]);
      parent.append(strong);
    } else if (m[5] !== undefined || m[6] !== undefined) {
      const em = el("em");
      appendInline(em, m[5] ?? m[6]);
      parent.append(em);
    } else if (m[8] !== undefined) {
      const href = safeUrl(m[8]);
      parent.append(href ? link(href, m[7] || m[8]) : document.createTextNode(m[0]));
    } else if (m[9] !== undefined) {
      const href = safeUrl(m[9]);
      parent.append(href ? link(href, m[9]) : document.createTextNode(m[9]));
    }
  }
  if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
}

const LIST_ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;

/** The markdown `text` as a fragment of DOM nodes (no HTML parsing anywhere). */
export function renderMarkdown(text) {
  const out = document.createDocumentFragment();
  const lines = String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
  let para = null;
  let list = null;
  const close = () => {
    para = null;
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = line.match(/^\s*(```+|~~~+)\s*([\w+-]*)/);
    if (fence) {
      close();
      const pre = el("pre");
      const code = el("code");
      if (fence[2]) code.dataset.lang = fence[2];
      const body = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(fence[1]); i++) body.push(lines[i]);
      code.textContent = body.join("\n");
      pre.append(code);
      out.append(pre);
      continue;
    }
    if (!line.trim()) {
      close();
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*?)\s*#*\s*$/);
    if (heading) {
      close();
      const h = el(`h${Math.min(6, heading[1].length + 2)}`);
      appendInline(h, heading[2]);
      out.append(h);
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      close();
      out.append(el("hr"));
      continue;
    }
    const item = line.match(LIST_ITEM);
    if (item) {
      const ordered = /\d/.test(item[2]);
      if (!list || list.ordered !== ordered) {
        para = null;
        list = { ordered, node: el(ordered ? "ol" : "ul") };
        if (ordered && parseInt(item[2], 10) !== 1) list.node.start = parseInt(item[2], 10);
        out.append(list.node);
      }
      const li = el("li");
      appendInline(li, item[3]);
      list.node.append(li);
      continue;
    }
    if (line.startsWith(">")) {
      close();
      const quote = el("blockquote");
      appendInline(quote, line.replace(/^>\s?/, ""));
      out.append(quote);
      continue;
    }
    if (list && /^\s{2,}\S/.test(line)) {
      // a continuation of the last list item
      list.node.lastElementChild.append(document.createTextNode(" "));
      appendInline(list.node.lastElementChild, line.trim());
      continue;
    }
    list = null;
    if (!para) {
      para = el("p");
      out.append(para);
    } else {
      para.append(el("br"));
    }
    appendInline(para, line);
  }
  return out;
}
