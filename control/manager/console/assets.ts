/**
 * The console's stylesheet and its one script, built into the package as strings: no CDN (clusters
 * are often air-gapped) and no file lookups, so Node and Lambda serve the same bytes.
 * The script only refreshes `[data-live]` regions by polling the page's own fragment (works within
 * Lambda's request limits, unlike a long-lived stream) and confirms destructive buttons.
 */
export const CONSOLE_CSS = `
:root{--fg:#1d2330;--muted:#5b6475;--bg:#f6f7f9;--card:#fff;--line:#d9dde5;--accent:#1f5fbf;--ok:#1b7a3d;--bad:#b3261e;--warn:#8a5a00}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
a{color:var(--accent)}
a:focus,button:focus,input:focus,select:focus,textarea:focus{outline:3px solid #8ab4f8;outline-offset:1px}
header{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1rem;padding:.6rem 1rem;background:#14213d;color:#fff}
header .brand{font-weight:700;color:#fff;text-decoration:none;margin-right:.5rem}
header nav{display:flex;flex-wrap:wrap;gap:.25rem .8rem}
header nav a{color:#dbe6ff;text-decoration:none;padding:.15rem .1rem}
header nav a[aria-current=page]{color:#fff;border-bottom:2px solid #fff}
header .who{margin-left:auto;display:flex;gap:.6rem;align-items:center;font-size:.9rem}
header .who button{background:none;border:1px solid #dbe6ff;color:#fff;border-radius:4px;padding:.15rem .5rem;cursor:pointer}
main{max-width:1200px;margin:0 auto;padding:1rem}
h1{font-size:1.4rem;margin:.3rem 0 1rem}
h2{font-size:1.1rem;margin:1.2rem 0 .5rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:1rem;margin-bottom:1rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:.6rem}
.stat{border:1px solid var(--line);border-radius:6px;padding:.5rem .7rem;background:#fbfcfe}
.stat b{display:block;font-size:1.3rem}
.stat span{color:var(--muted);font-size:.85rem}
.stat.warn b{color:var(--bad)}
.table{width:100%;overflow-x:auto}
table{border-collapse:collapse;width:100%;background:var(--card)}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:.85rem;color:var(--muted);font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem}
code{overflow-wrap:anywhere}
pre{background:#0f172a;color:#e2e8f0;padding:.7rem;border-radius:6px;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
form.stack{display:grid;gap:.6rem;max-width:560px}
form.inline{display:inline}
form.inline select{width:auto;margin-right:.3rem}
.sr-only{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);white-space:nowrap;border:0}
fieldset{border:1px solid var(--line);border-radius:6px;padding:.5rem .7rem;display:grid;gap:.5rem}
label{display:grid;gap:.2rem;font-weight:600;font-size:.9rem}
label.check{display:flex;gap:.4rem;align-items:center;font-weight:400}
input,select,textarea{font:inherit;padding:.35rem .5rem;border:1px solid #9aa3b5;border-radius:4px;background:#fff;color:var(--fg);width:100%}
label.check input{width:auto}
textarea{min-height:4rem}
.hint{font-weight:400;color:var(--muted);font-size:.8rem}
button{font:inherit;padding:.4rem .9rem;border-radius:4px;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer}
button.secondary{background:#fff;color:var(--accent)}
button.danger{background:var(--bad);border-color:var(--bad)}
.flash{padding:.6rem .8rem;border-radius:6px;margin-bottom:1rem;border:1px solid}
.flash.error{background:#fdecea;border-color:#f5c2c0;color:var(--bad)}
.flash.ok{background:#e7f5ec;border-color:#b7e1c5;color:var(--ok)}
.secret{font-size:1rem;background:#fff8e1;border:1px dashed var(--warn);padding:.5rem;word-break:break-all;display:block}
.state-SUCCESS,.state-Succeeded,.state-active{color:var(--ok);font-weight:600}
.state-FAILURE,.state-Failed,.state-inactive{color:var(--bad);font-weight:600}
.state-PENDING,.state-Running,.state-Pending{color:var(--warn);font-weight:600}
progress{width:8rem;height:.9rem;vertical-align:middle}
.muted{color:var(--muted)}
.row{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-end}
.row>*{flex:1 1 200px}
svg.graph{width:100%;height:auto;background:#fff;border:1px solid var(--line);border-radius:6px}
svg.graph text{font:12px system-ui,sans-serif;fill:#1d2330}
svg.graph .edge{stroke:#7a869a;stroke-width:1.5;fill:none}
svg.graph .node{fill:#e8f0fe;stroke:#1f5fbf}
svg.graph .node.seed{fill:#fff3cd;stroke:#8a5a00}
svg.graph .node.origin{stroke-dasharray:4 2}
.signin{max-width:380px;margin:3rem auto}
.skip{position:absolute;left:-9999px}.skip:focus{left:1rem;top:.5rem;background:#fff;color:#000;padding:.3rem;z-index:9}
@media (max-width:640px){main{padding:.6rem}.grid{grid-template-columns:1fr 1fr}header .who{margin-left:0}th,td{padding:.3rem}.hide-sm{display:none}}
`;

export const CONSOLE_JS = `
(function(){
  var live=document.querySelectorAll('[data-live]');
  if(live.length){
    var every=Number(document.body.getAttribute('data-poll')||'3000');
    var busy=false;
    setInterval(function(){
      if(busy||document.hidden)return;busy=true;
      var u=new URL(location.href);u.searchParams.set('fragment','1');
      fetch(u.toString(),{credentials:'same-origin',headers:{accept:'text/html'}}).then(function(r){
        if(r.status===401||r.redirected){location.reload();return null}
        return r.ok?r.text():null;
      }).then(function(t){
        if(t===null)return;
        var doc=new DOMParser().parseFromString('<div>'+t+'</div>','text/html');
        doc.querySelectorAll('[data-live]').forEach(function(n){
          var cur=document.getElementById(n.id);if(cur)cur.innerHTML=n.innerHTML;
        });
      }).catch(function(){}).then(function(){busy=false});
    },every);
  }
  document.addEventListener('submit',function(e){
    var f=e.target;var q=f.getAttribute('data-confirm');
    if(q&&!window.confirm(q))e.preventDefault();
  });
})();
`;
