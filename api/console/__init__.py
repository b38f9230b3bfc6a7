"""The web console (issue #14): server-rendered pages in the API's own route table (api.routes), one
authorization table for both."""
