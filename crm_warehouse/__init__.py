"""crm-warehouse: forms, call centre and sales into one trusted customer view."""
