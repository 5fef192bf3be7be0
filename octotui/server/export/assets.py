"""The HTML report's stylesheet and scripts, inline in the page (nothing is fetched when it opens).

The page's Content-Security-Policy allows exactly these (by their SHA-256), so that even text
that escaped its escaping could not run. ``CATCH`` runs first: it writes any uncaught error,
``console.error`` call or policy violation into ``#page-errors`` (shown at the top of the page, and
read by the browser test). ``DRAW`` draws the charts as SVG from the JSON in ``#report-data``,
makes the tables sortable and marks the body ``data-charts-drawn="N"`` when done; the label picker
(``#label-pick``, or ``#label=NAME`` in the address) redraws the per-label charts and names the label
shown in ``data-label-shown``.
"""

from __future__ import annotations

STYLE = """
:root{--fg:#1d2330;--muted:#5c6578;--line:#d9dee8;--bg:#fff;--panel:#f6f8fb;--accent:#2f6fd6;
--bad:#c62f2f;--good:#1f8a4c;--warn:#b7791f;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Liberation Sans",Arial,sans-serif;color:var(--fg);background:var(--bg)}
body{margin:0 auto;max-width:1200px;padding:20px 24px 40px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid var(--line);
padding-bottom:4px}.sub{color:var(--muted)}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;font-size:13px;
color:#fff;background:var(--muted);vertical-align:middle;margin-left:8px}
.badge.finished{background:var(--good)}.badge.failed{background:var(--bad)}.badge.live{background:var(--accent)}
.badge.stopped{background:var(--warn)}
.banner{padding:8px 12px;border-radius:6px;margin:12px 0;background:#e8f0fd;border:1px solid #b9cff5}
.banner.bad{background:#fdeaea;border-color:#f1b9b9}
#page-errors{white-space:pre-wrap;background:#fdeaea;border:1px solid var(--bad);padding:8px;
font:12px ui-monospace,monospace}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.card{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:8px 10px}
.card .v{font-size:18px;font-weight:600;white-space:nowrap}.card .k{color:var(--muted);font-size:12px}
div.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:4px 7px;border-bottom:1px solid var(--line);text-align:right;vertical-align:top}
th:first-child,td:first-child,td.t,th.t{text-align:left}
td{white-space:nowrap}td.t{white-space:normal;overflow-wrap:break-word;max-width:420px}
#labels td:first-child,#errors td:first-child{min-width:14em}
thead th{background:var(--panel);position:sticky;top:0;font-weight:600;white-space:nowrap}
table.sortable thead th{cursor:pointer;user-select:none}
thead th[aria-sort=ascending]::after{content:" \\25B2";font-size:10px}
thead th[aria-sort=descending]::after{content:" \\25BC";font-size:10px}
tfoot td{font-weight:600;border-top:2px solid var(--line)}
tr.err td.e{color:var(--bad);font-weight:600}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dl.kv dt{color:var(--muted)}dl.kv dd{margin:0;word-break:break-word}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px}
figure{margin:0;background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:8px}
figcaption{font-weight:600;margin-bottom:4px}
svg.chart{width:100%;height:auto;display:block}
svg.chart text{font-size:11px;fill:var(--muted)}svg.chart .grid{stroke:var(--line);stroke-width:1}
svg.chart .axis{stroke:#9aa3b5;stroke-width:1}svg.chart .line{fill:none;stroke-width:2}
svg.chart .area{opacity:.12;stroke:none}
.banner.warn{background:#fff6e5;border-color:#f0d29a}
.badge.passed{background:var(--good)}
.pick{margin:4px 0 10px}.pick select{font:inherit;padding:2px 4px;max-width:100%}
td.pass{color:var(--good);font-weight:600}td.fail{color:var(--bad);font-weight:600}
footer{margin-top:32px;color:var(--muted);font-size:12px}
.none{color:var(--muted);font-style:italic}
@media print{thead th{position:static}.charts{grid-template-columns:1fr}}
"""

CATCH = """
(function(){var box=document.getElementById('page-errors');
function put(m){box.hidden=false;box.appendChild(document.createTextNode(String(m)+'\\n'));}
window.addEventListener('error',function(e){put('error: '+(e.message||e.type));});
window.addEventListener('unhandledrejection',function(e){put('unhandled rejection: '+e.reason);});
document.addEventListener('securitypolicyviolation',function(e){put('blocked by the page policy: '+
e.violatedDirective+' '+e.blockedURI);});
var original=console.error;console.error=function(){put('console.error: '+
Array.prototype.join.call(arguments,' '));return original.apply(console,arguments);};})();
"""

DRAW = """
(function(){
var NS='http://www.w3.org/2000/svg';
var data=JSON.parse(document.getElementById('report-data').textContent);
var PALETTE=['#2f6fd6','#c62f2f','#1f8a4c','#7b3fc4','#b7791f','#0f8b8d','#d6336c','#5c6578'];
function el(name,attrs,parent){var e=document.createElementNS(NS,name);
for(var k in attrs){e.setAttribute(k,String(attrs[k]));}if(parent){parent.appendChild(e);}return e;}
function txt(parent,x,y,s,anchor){var t=el('text',{x:x,y:y,'text-anchor':anchor||'start'},parent);
t.textContent=s;return t;}
function nice(max){if(!(max>0)){return 1;}var p=Math.pow(10,Math.floor(Math.log10(max)));
var steps=[1,2,2.5,5,10];for(var i=0;i<steps.length;i++){if(steps[i]*p>=max){return steps[i]*p;}}return 10*p;}
function num(v){if(Math.abs(v)>=1e6){return (v/1e6).toFixed(1)+'M';}if(Math.abs(v)>=1e4){return (v/1e3).toFixed(0)+'k';}
if(Math.abs(v)>=100||v===Math.round(v)){return String(Math.round(v));}return String(parseFloat(v.toFixed(2)));}
function clock(s){s=Math.max(0,Math.round(s));var h=Math.floor(s/3600),m=Math.floor(s%3600/60),x=s%60;
var mm=(m<10&&h?'0':'')+m,ss=(x<10?'0':'')+x;return (h?h+':':'')+mm+':'+ss;}
/* One chart: lines [{xs, ys, color, name}] (null values left out) on one time axis and scale;
opt.axis [x0, x1]: that time axis (points outside left out), opt.marks [[start, end|null, severity]]. */
function chart(fig,lines,unit,opt){opt=opt||{};var ax=opt.axis;
function out(x){return ax?(x<ax[0]||x>ax[1]):false;}
var old=fig.querySelector('svg');if(old){fig.removeChild(old);}
var W=560,H=200,L=48,R=12,T=10,B=28,w=W-L-R,h=H-T-B;
var svg=el('svg',{viewBox:'0 0 '+W+' '+H,'class':'chart',role:'img'},fig);
var title=el('title',{},svg);title.textContent=fig.getAttribute('data-title');
var x0=Infinity,x1=-Infinity,ymax=0,any=false;
lines.forEach(function(l){for(var i=0;i<l.xs.length;i++){if(l.ys[i]===null||out(l.xs[i])){continue;}any=true;
x0=Math.min(x0,l.xs[i]);x1=Math.max(x1,l.xs[i]);ymax=Math.max(ymax,l.ys[i]);}});
if(!any){txt(svg,W/2,H/2,'no points recorded','middle');return false;}
if(ax){x0=ax[0];x1=ax[1];}
var span=Math.max(x1-x0,1),top=nice(ymax);
for(var i=0;i<=4;i++){var y=T+h-h*i/4;el('line',{x1:L,x2:L+w,y1:y,y2:y,'class':'grid'},svg);
txt(svg,L-6,y+4,num(top*i/4),'end');}
for(var j=0;j<=5;j++){var x=L+w*j/5;el('line',{x1:x,x2:x,y1:T+h,y2:T+h+4,'class':'axis'},svg);
txt(svg,x,H-8,clock(x0+span*j/5),'middle');}
el('line',{x1:L,x2:L+w,y1:T+h,y2:T+h,'class':'axis'},svg);
txt(svg,L+4,T+10,unit);
(opt.marks||[]).forEach(function(m){var c=m[2]==='critical'?'#c62f2f':'#b7791f';
var a=Math.max(m[0],x0),b=Math.min(m[1]===null?x1:m[1],x1);
function at(t){return (L+w*(t-x0)/span).toFixed(1);}
if(b>=a){el('rect',{x:at(a),y:T,width:Math.max(1,at(b)-at(a)),height:h,fill:c,opacity:0.08,'class':'alarm-band'},svg);}
if(m[0]>=x0&&m[0]<=x1){el('line',{x1:at(m[0]),x2:at(m[0]),y1:T,y2:T+h,stroke:c,'stroke-width':1.5,'class':'alarm-start'},svg);}
if(m[1]!==null&&m[1]>=x0&&m[1]<=x1){el('line',{x1:at(m[1]),x2:at(m[1]),y1:T,y2:T+h,stroke:c,'stroke-width':1.5,
'stroke-dasharray':'4 3','class':'alarm-end'},svg);}});
lines.forEach(function(l,n){var pts=[];
for(var k=0;k<l.xs.length;k++){if(l.ys[k]===null||out(l.xs[k])){continue;}
pts.push((L+w*(l.xs[k]-x0)/span).toFixed(1)+','+
(T+h-h*Math.max(0,l.ys[k])/top).toFixed(1));}
if(pts.length===0){return;}
if(pts.length===1){var p=pts[0].split(',');el('circle',{cx:p[0],cy:p[1],r:3,fill:l.color},svg);}
if(lines.length===1){el('polygon',{points:(pts[0].split(',')[0]+','+(T+h)+' ')+pts.join(' ')+' '+
(pts[pts.length-1].split(',')[0]+','+(T+h)),'class':'area',fill:l.color},svg);}
el('polyline',{points:pts.join(' '),'class':'line',stroke:l.color,'data-name':l.name},svg);
if(lines.length>1){var lx=L+70+150*n;el('rect',{x:lx,y:T+2,width:10,height:10,fill:l.color},svg);
txt(svg,lx+14,T+11,l.name.length>18?l.name.slice(0,17)+'\\u2026':l.name);}});
return true;}
function col(rows,i){return rows.map(function(p){return p[i];});}
function kb(rows,i){return rows.map(function(p){return p[i]===null?null:p[i]/1024;});}
var s=data.series,xs=col(s,0);
var defs={hits:[[{xs:xs,ys:col(s,1),color:PALETTE[0],name:'hits/s'}],'hits/s'],
times:[[{xs:xs,ys:col(s,2),color:PALETTE[3],name:'average (whole test)'},
{xs:xs,ys:col(s,6),color:PALETTE[4],name:'95th per interval'}],'ms'],
errors:[[{xs:xs,ys:col(s,5),color:PALETTE[1],name:'errors/s'}],'errors/s'],
active:[[{xs:xs,ys:col(s,4),color:PALETTE[2],name:'threads'}],'threads'],
bytes:[[{xs:xs,ys:kb(s,7),color:PALETTE[5],name:'received'},{xs:xs,ys:kb(s,8),color:PALETTE[6],name:'sent'}],'KiB/s']};
function gens(i,unit){return [data.generators.map(function(g,n){var r=g.points;
return {xs:col(r,0),ys:col(r,i),color:PALETTE[n%PALETTE.length],name:g.name};}),unit];}
if(data.generators.length){defs['gen-cpu']=gens(1,'CPU %');defs['gen-memory']=gens(2,'memory %');}
function labelDefs(l){var r=l.points,x=col(r,0);
return {'label-hits':[[{xs:x,ys:col(r,1),color:PALETTE[0],name:'hits/s'}],'hits/s'],
'label-errors':[[{xs:x,ys:col(r,2),color:PALETTE[1],name:'errors/s'}],'errors/s'],
'label-times':[[{xs:x,ys:col(r,3),color:PALETTE[3],name:'average'},{xs:x,ys:col(r,4),color:PALETTE[4],name:'95th'}],'ms'],
'label-bytes':[[{xs:x,ys:kb(r,5),color:PALETTE[5],name:'received'},{xs:x,ys:kb(r,6),color:PALETTE[6],name:'sent'}],'KiB/s']};}
(data.monitors||[]).forEach(function(m,i){defs['mon-'+i]=[[{xs:col(m.points,0),ys:col(m.points,1),
color:PALETTE[(i+2)%PALETTE.length],name:m.metric}],m.metric.length>40?m.metric.slice(0,39)+'\u2026':m.metric,
{axis:data.axis,marks:m.alarms}];});
var pick=document.getElementById('label-pick');
if(pick&&data.labels.length){var ld=labelDefs(data.labels[0]);for(var key in ld){defs[key]=ld[key];}}
var drawn=0;var figs=document.querySelectorAll('figure[data-chart]');
for(var f=0;f<figs.length;f++){var d=defs[figs[f].getAttribute('data-chart')];
if(d){chart(figs[f],d[0],d[1],d[2]);drawn++;}}
if(pick){pick.addEventListener('change',function(){var l=data.labels[parseInt(pick.value,10)];if(!l){return;}
var ld=labelDefs(l);
Array.prototype.forEach.call(document.querySelectorAll('figure[data-chart^="label-"]'),function(fig){
var d=ld[fig.getAttribute('data-chart')];if(d){chart(fig,d[0],d[1]);}});
document.body.setAttribute('data-label-shown',l.name);});}
function fromHash(){if(!pick||location.hash.indexOf('#label=')!==0){return;}
var want=decodeURIComponent(location.hash.slice(7));
for(var i=0;i<data.labels.length;i++){if(data.labels[i].name===want){pick.value=String(i);
pick.dispatchEvent(new Event('change'));}}}
function sortable(table){var heads=table.tHead.rows[0].cells;
Array.prototype.forEach.call(heads,function(th,col){th.tabIndex=0;
function go(){var dir=th.getAttribute('aria-sort')==='ascending'?'descending':'ascending';
Array.prototype.forEach.call(heads,function(o){o.removeAttribute('aria-sort');});th.setAttribute('aria-sort',dir);
var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows),numeric=th.className.indexOf('t')<0;
rows.sort(function(a,b){var x=a.cells[col],y=b.cells[col];var r;
if(numeric){r=parseFloat(x.getAttribute('data-v'))-parseFloat(y.getAttribute('data-v'));}
else{r=x.textContent.localeCompare(y.textContent);}return dir==='ascending'?r:-r;});
rows.forEach(function(r){body.appendChild(r);});}
th.addEventListener('click',go);th.addEventListener('keydown',function(e){if(e.key==='Enter'){go();}});});}
Array.prototype.forEach.call(document.querySelectorAll('table.sortable'),sortable);
if(pick&&data.labels.length){document.body.setAttribute('data-label-shown',data.labels[0].name);}
fromHash();window.addEventListener('hashchange',fromHash);
document.body.setAttribute('data-charts-drawn',String(drawn));
})();
"""
