// The visit's signature pad (VIS-3): draw with a finger, pen or mouse; the drawing goes with
// the form as a PNG data URL. A static file, so the page needs no inline script.
(function () {
  var canvas = document.getElementById("signature-pad"), ctx = canvas.getContext("2d");
  var drawing = false, drawn = false;
  ctx.lineWidth = 2; ctx.lineCap = "round"; ctx.strokeStyle = "#000";
  function at(e) {
    var r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  }
  canvas.addEventListener("pointerdown", function (e) {
    drawing = true; canvas.setPointerCapture(e.pointerId);
    var p = at(e); ctx.beginPath(); ctx.moveTo(p[0], p[1]);
  });
  canvas.addEventListener("pointermove", function (e) {
    if (!drawing) return;
    var p = at(e); ctx.lineTo(p[0], p[1]); ctx.stroke(); drawn = true;
  });
  ["pointerup", "pointercancel"].forEach(function (n) { canvas.addEventListener(n, function () { drawing = false; }); });
  document.getElementById("signature-clear").addEventListener("click", function () {
    ctx.clearRect(0, 0, canvas.width, canvas.height); drawn = false;
  });
  document.getElementById("signature-form").addEventListener("submit", function () {
    document.getElementById("signature-data").value = drawn ? canvas.toDataURL("image/png") : "";
  });
})();
