"""Erasure of a person on request (个人信息删除): `crm erase --customer-id`."""
