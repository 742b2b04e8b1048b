/* devupdate console: confirmation dialogs and the upload progress bar. No framework, no build step. */
"use strict";

(function () {
  var dialog = document.getElementById("confirm-dialog");

  /* Forms with data-confirm ask first; the server also insists on confirmed=yes for rule actions. */
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-confirm]")) return;
    var confirmed = form.querySelector("input[name=confirmed]");
    if (form.dataset.approved === "yes") return;
    event.preventDefault();
    if (!dialog || typeof dialog.showModal !== "function") {
      if (window.confirm(form.dataset.confirm)) submitConfirmed(form, confirmed);
      return;
    }
    document.getElementById("confirm-title").textContent = (form.dataset.verb || "Confirm") + "?";
    document.getElementById("confirm-summary").textContent = form.dataset.confirm;
    var details = document.getElementById("confirm-details");
    details.textContent = "";
    (form.dataset.details || "").split("\n").forEach(function (line) {
      if (!line) return;
      var item = document.createElement("li");
      item.textContent = line;
      details.appendChild(item);
    });
    document.getElementById("confirm-ok").textContent = form.dataset.verb || "Confirm";
    dialog.returnValue = "";
    dialog.onclose = function () {
      if (dialog.returnValue === "ok") submitConfirmed(form, confirmed);
    };
    dialog.showModal();
  });

  function submitConfirmed(form, confirmed) {
    if (confirmed) confirmed.value = "yes";
    form.dataset.approved = "yes";
    form.submit();
  }

  /* Upload: stream the file as the request body so the browser reports progress. */
  var upload = document.getElementById("upload-form");
  if (!upload || !window.XMLHttpRequest) return;
  upload.addEventListener("submit", function (event) {
    var input = upload.querySelector("input[type=file]");
    if (!input.files || !input.files.length) return;
    event.preventDefault();
    var file = input.files[0];
    var status = document.getElementById("upload-status");
    var bar = document.getElementById("upload-progress");
    var text = document.getElementById("upload-text");
    var result = document.getElementById("upload-result");
    var button = document.getElementById("upload-button");
    status.hidden = false;
    result.hidden = true;
    result.textContent = "";
    button.disabled = true;
    bar.value = 0;
    text.textContent = "Uploading " + file.name + "…";

    var xhr = new XMLHttpRequest();
    xhr.open("POST", upload.action);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRF-Token", upload.querySelector("input[name=csrf_token]").value);
    xhr.setRequestHeader("X-File-Name", encodeURIComponent(file.name));
    xhr.upload.onprogress = function (e) {
      if (!e.lengthComputable) return;
      bar.value = Math.floor(100 * e.loaded / e.total);
      text.textContent = "Uploading " + file.name + ": " + size(e.loaded) + " of " + size(e.total) +
        " (" + bar.value + " %)";
    };
    xhr.upload.onload = function () {
      bar.value = 100;
      text.textContent = "Uploaded " + size(file.size) + ". Importing: checking the package and its catalogs…";
    };
    xhr.onerror = function () {
      done(false, "The connection broke off; nothing was imported. Try again.");
    };
    xhr.onload = function () {
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status === 200 || xhr.status === 201) {
        done(true, body.message);
        showRules(body);
      } else {
        var message = body && body.error ? body.error.message : "The server answered " + xhr.status + ".";
        done(false, message);
      }
    };
    xhr.send(file);

    function done(ok, message) {
      button.disabled = false;
      text.textContent = message;
      text.className = ok ? "notice notice-ok" : "notice notice-error";
      status.dataset.state = ok ? "done" : "failed";
    }

    function showRules(body) {
      if (!body.rules || !body.rules.length) return;
      var list = document.createElement("ul");
      list.className = "plain";
      body.rules.forEach(function (rule) {
        var item = document.createElement("li");
        var link = document.createElement("a");
        link.href = rule.Url;
        link.textContent = rule.Label;
        var version = document.createElement("code");
        version.textContent = rule.Version;
        item.appendChild(link);
        item.appendChild(document.createTextNode(" "));
        item.appendChild(version);
        item.appendChild(document.createTextNode(" · " + rule.Change));
        list.appendChild(item);
      });
      (body.findings || []).forEach(function (finding) {
        var item = document.createElement("li");
        item.className = "warn";
        item.textContent = "Warning: " + finding;
        list.appendChild(item);
      });
      var heading = document.createElement("h2");
      heading.textContent = "Rules touched";
      var review = document.createElement("a");
      review.href = body.rulesUrl;
      review.className = "button primary";
      review.textContent = "Review and approve";
      result.appendChild(heading);
      result.appendChild(list);
      result.appendChild(review);
      result.hidden = false;
    }
  });

  function size(bytes) {
    var units = ["B", "KiB", "MiB", "GiB"];
    var i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
    return (i ? bytes.toFixed(1) : bytes) + " " + units[i];
  }
})();
