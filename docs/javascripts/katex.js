// The formulas, typeset in the browser by KaTeX, which the site serves itself
// (docs/vendor/katex): they render with no network. pymdownx.arithmatex (generic mode)
// puts each formula in an element of class "arithmatex", as \(...\) inline and \[...\]
// displayed; only those elements are typeset. A formula KaTeX cannot read (an unknown
// command, say) stays as its TeX source, which the site's browser test looks for.
document$.subscribe(() => {
  for (const element of document.querySelectorAll(".arithmatex")) {
    renderMathInElement(element, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      throwOnError: true,
    })
  }
})
