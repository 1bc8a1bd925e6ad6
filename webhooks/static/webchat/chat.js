/* Fatoura web chat: one WebSocket to /chat/ws; the frames are described in bot/channels/webchat.py.
   Plain script, no build step, nothing loaded from elsewhere. */
(function () {
  "use strict";

  var cfg = JSON.parse(document.getElementById("fatoura-config").textContent);
  var app = byId("app"), log = byId("log"), banner = byId("banner"), form = byId("composer");
  var input = byId("input"), sendButton = byId("send"), subtitle = byId("subtitle");

  var SESSION_KEY = "fatoura.session", LANG_KEY = "fatoura.lang";
  var SESSION_RE = /^[A-Za-z0-9_-]{22}$/;
  var MAX_TEXT_BYTES = 4096;

  var session = readStore(SESSION_KEY);
  if (!SESSION_RE.test(session || "")) session = newSession();

  // The page follows the conversation's language: an rtl reply turns it Arabic, an ltr one back.
  var storedLang = readStore(LANG_KEY);
  var lang = cfg.language_hint || (cfg.strings[storedLang] ? storedLang : cfg.lang);
  var ltrLang = isRtl(lang) ? (isRtl(cfg.lang) ? "fr" : cfg.lang) : lang;
  var languageHint = cfg.language_hint || storedLang || navigator.language || null;
  var strings = cfg.strings[lang];

  var ws = null, attempt = 0, retryTimer = null, troubled = false;
  var pending = [];        // frames sent and not yet acknowledged, re-sent after a reconnect
  var bubbles = {};        // message id -> element
  var pressedFrom = {};    // client id of a button press -> the message element it came from
  var typing = null;

  function byId(id) { return document.getElementById(id); }

  function readStore(key) {
    try { return window.localStorage.getItem(key); } catch (e) { return null; }
  }

  function writeStore(key, value) {
    try { window.localStorage.setItem(key, value); } catch (e) { /* private mode: this tab only */ }
  }

  function token(bytes) {
    var raw = new Uint8Array(bytes);
    window.crypto.getRandomValues(raw);
    return btoa(String.fromCharCode.apply(null, raw)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function newSession() {
    var id = token(16);
    writeStore(SESSION_KEY, id);
    return id;
  }

  function isRtl(code) { return cfg.rtl_languages.indexOf(code) >= 0; }

  function setLang(code) {
    if (!cfg.strings[code]) return;
    lang = code;
    strings = cfg.strings[code];
    if (!isRtl(code)) ltrLang = code;
    document.documentElement.lang = code;
    document.documentElement.dir = isRtl(code) ? "rtl" : "ltr";
    subtitle.textContent = strings.subtitle;
    input.placeholder = strings.placeholder;
    input.setAttribute("aria-label", strings.placeholder);
    sendButton.textContent = strings.send;
    banner.textContent = strings.reconnecting;
    log.setAttribute("aria-label", strings.conversation);
    Array.prototype.forEach.call(log.querySelectorAll(".file-download"), function (link) {
      link.textContent = strings.download;
    });
    writeStore(LANG_KEY, code);
  }

  // --- connection --------------------------------------------------------------------------------

  function setState(state) {
    app.setAttribute("data-state", state);
    banner.hidden = state === "online" || !troubled;
    showTyping();
  }

  function connect() {
    clearTimeout(retryTimer);
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + cfg.socket;
    setState("connecting");
    try {
      ws = new WebSocket(url);
    } catch (e) {
      ws = null;
      troubled = true;
      retry();
      return;
    }
    ws.onopen = function () {
      attempt = 0;
      troubled = false;
      setState("online");
      pending.forEach(transmit);
    };
    ws.onmessage = function (message) {
      var frame;
      try { frame = JSON.parse(message.data); } catch (e) { return; }
      if (frame && typeof frame === "object") receive(frame);
    };
    ws.onclose = function () {
      ws = null;
      troubled = true;
      setState("offline");
      retry();
    };
  }

  function retry() {
    clearTimeout(retryTimer);
    var delay = Math.min(15000, 500 * Math.pow(2, attempt++)) * (0.75 + Math.random() * 0.5);
    retryTimer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (!ws) { attempt = 0; connect(); }
  }

  window.addEventListener("online", reconnectNow);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") reconnectNow();
  });

  function send(frame) {
    frame.id = "c" + token(9);
    if (languageHint) frame.language = languageHint;
    pending.push(frame);
    transmit(frame);
    showTyping();
    return frame.id;
  }

  function transmit(frame) {
    frame.session = session;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
  }

  function settle(id) {
    pending = pending.filter(function (frame) { return frame.id !== id; });
    if (pressedFrom[id]) {
      pressedFrom[id].classList.remove("busy");
      delete pressedFrom[id];
    }
    showTyping();
  }

  function receive(frame) {
    switch (frame.type) {
      case "text": showText(frame); break;
      case "document":
      case "image": showFile(frame); break;
      case "delete": removeMessage(frame.id); break;
      case "ack": settle(frame.id); break;
      case "error": refused(frame); break;
    }
  }

  function refused(frame) {
    if (frame.ref) {
      settle(frame.ref);
      if (bubbles[frame.ref]) bubbles[frame.ref].classList.add("failed");
    }
    notice(frame.code === "too_large" ? strings.too_large
      : frame.code === "slow_down" ? strings.slow_down : strings.failed);
    if (frame.code === "bad_session") {
      session = newSession();
      if (ws) ws.close();
    }
  }

  // --- rendering ---------------------------------------------------------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function nearBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 120;
  }

  function scrollDown() {
    log.scrollTop = log.scrollHeight;
  }

  function place(node, replaceId) {
    var stick = nearBottom();
    var old = replaceId ? bubbles[replaceId] : null;
    if (old && old.parentNode === log) {
      log.replaceChild(node, old);
      delete bubbles[replaceId];
    } else {
      log.insertBefore(node, typing && typing.parentNode === log ? typing : null);
    }
    if (stick) scrollDown();
  }

  function message(side, id) {
    var node = el("div", "msg " + side);
    if (id) {
      node.setAttribute("data-id", id);
      bubbles[id] = node;
    }
    return node;
  }

  // Plain text with its web links made clickable; nothing is parsed as HTML.
  function fillText(node, text) {
    var pattern = /https?:\/\/[^\s<>"']+/g, last = 0, match;
    while ((match = pattern.exec(text)) !== null) {
      var href = match[0].replace(/[.,;:!?)\]]+$/, "");
      node.appendChild(document.createTextNode(text.slice(last, match.index)));
      var link = el("a", null, href);
      link.href = href;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      node.appendChild(link);
      last = match.index + href.length;
      pattern.lastIndex = last;
    }
    node.appendChild(document.createTextNode(text.slice(last)));
  }

  function safeUrl(url, allowAbsolute) {
    if (typeof url !== "string") return null;
    if (/^\/(?!\/)/.test(url)) return url;
    return allowAbsolute && /^https?:\/\//i.test(url) ? url : null;
  }

  function showText(frame) {
    if (frame.rtl && !isRtl(lang)) setLang(cfg.rtl_languages[0]);
    else if (!frame.rtl && isRtl(lang)) setLang(ltrLang);
    var node = message("bot", frame.id);
    var direction = frame.rtl ? "rtl" : "ltr";
    var bubble = el("div", "bubble");
    bubble.dir = direction;
    fillText(bubble, String(frame.text || ""));
    node.appendChild(bubble);
    var rows = Array.isArray(frame.buttons) ? frame.buttons : [];
    if (rows.length) {
      var chips = el("div", "chips");
      chips.dir = direction;
      rows.forEach(function (row) {
        var line = el("div", "chip-row");
        (Array.isArray(row) ? row : []).forEach(function (button) {
          var chip;
          if (button.url) {
            var href = safeUrl(button.url, true);
            if (!href) return;
            chip = el("a", "chip link", button.label);
            chip.href = href;
            chip.target = "_blank";
            chip.rel = "noopener noreferrer";
          } else {
            chip = el("button", "chip", button.label);
            chip.type = "button";
            chip.addEventListener("click", function () { press(node, button.data); });
          }
          line.appendChild(chip);
        });
        if (line.childNodes.length) chips.appendChild(line);
      });
      node.appendChild(chips);
    }
    place(node, frame.replace_id);
  }

  function press(node, data) {
    if (node.classList.contains("busy") || !node.parentNode) return;
    node.classList.add("busy");
    var id = send({ type: "button", data: data, source_id: node.getAttribute("data-id") });
    pressedFrom[id] = node;
  }

  function fileSize(bytes) {
    var kb = Math.max(1, Math.round((bytes || 0) / 1024));
    try {
      return new Intl.NumberFormat(lang, { style: "unit", unit: "kilobyte", unitDisplay: "short" }).format(kb);
    } catch (e) {
      return kb + " KB";
    }
  }

  function showFile(frame) {
    var url = safeUrl(frame.url, false);
    var node = message("bot", frame.id);
    var bubble = el("div", "bubble file");
    if (frame.type === "image" && url) {
      var img = el("img", "picture");
      img.src = url;
      img.alt = frame.caption || frame.filename || "";
      img.addEventListener("load", function () { if (nearBottom()) scrollDown(); });
      bubble.appendChild(img);
    } else {
      var card = el("div", "file-card");
      var kind = frame.mime_type === "application/pdf" ? "PDF"
        : String(frame.filename || "").split(".").pop().slice(0, 4).toUpperCase();
      card.appendChild(el("div", "file-icon", kind || "FILE"));
      var meta = el("div", "file-meta");
      var name = el("div", "file-name", frame.filename);
      name.dir = "auto";
      meta.appendChild(name);
      var size = el("div", "file-size", fileSize(frame.size));
      size.dir = "auto";
      meta.appendChild(size);
      card.appendChild(meta);
      if (url) {
        var link = el("a", "file-download", strings.download);
        link.href = url;
        link.setAttribute("download", frame.filename || "");
        card.appendChild(link);
      }
      bubble.appendChild(card);
    }
    if (frame.caption) {
      var caption = el("p", "caption");
      caption.dir = "auto";
      fillText(caption, String(frame.caption));
      bubble.appendChild(caption);
    }
    node.appendChild(bubble);
    place(node, null);
  }

  function removeMessage(id) {
    var node = bubbles[id];
    if (node && node.parentNode) node.parentNode.removeChild(node);
    delete bubbles[id];
  }

  function notice(text) {
    var node = el("div", "notice", text);
    node.setAttribute("role", "alert");
    place(node, null);
  }

  function showTyping() {
    var waiting = pending.length > 0 && app.getAttribute("data-state") === "online";
    if (waiting && !typing) {
      typing = el("div", "msg bot typing");
      typing.setAttribute("aria-hidden", "true");
      var bubble = el("div", "bubble");
      for (var i = 0; i < 3; i++) bubble.appendChild(el("span", "dot-typing"));
      typing.appendChild(bubble);
      var stick = nearBottom();
      log.appendChild(typing);
      if (stick) scrollDown();
    } else if (!waiting && typing) {
      if (typing.parentNode) typing.parentNode.removeChild(typing);
      typing = null;
    }
  }

  // --- composer ----------------------------------------------------------------------------------

  form.addEventListener("submit", function (submitEvent) {
    submitEvent.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    if (new TextEncoder().encode(text).length > MAX_TEXT_BYTES) {
      notice(strings.too_large);
      return;
    }
    input.value = "";
    var frame = { type: "text", text: text };
    var id = send(frame);
    var node = message("me", id);
    var bubble = el("div", "bubble");
    bubble.dir = "auto";
    fillText(bubble, text);
    node.appendChild(bubble);
    place(node, null);
    scrollDown();
    input.focus();
  });

  setLang(lang);
  send({ type: "start" });
  connect();
})();
