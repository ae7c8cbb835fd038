// MathJax 3 for pymdownx.arithmatex (generic mode): typeset $$...$$ and \(...\) on every page, also after
// mkdocs-material's instant navigation swaps the page content.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true, tags: "none" },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" },
};
if (typeof document$ !== "undefined") {
  document$.subscribe(() => { if (window.MathJax.typesetPromise) { window.MathJax.typesetPromise(); } });
}
