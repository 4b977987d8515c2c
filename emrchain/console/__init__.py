"""The operator console: a read-only page on the instrumentation listener (docs/console.md).

`model` turns what the node reports into tables and chart figures; `page` writes them as HTML;
`static/` holds the page's stylesheet and the small script that redraws it from
`/console/state`. The routes and the gathering of the node's figures are in
`emrchain/rpc/console.py`.
"""
