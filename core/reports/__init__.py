"""Reports from a chat's invoices: spending charts, exports, archives (issue 8)."""
