def test_acc_1_login_page_and_clerk_home(login_as, client_factory=None):
    client = login_as("cs_clerk")
    page = client.get("/admin/")
    assert page.status_code == 200
