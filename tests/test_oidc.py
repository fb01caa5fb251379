"""Single sign-on against a real OpenID provider (oidc-provider, tests/support/oidc_provider.py)
on loopback, in Chromium through the provider's own login page, with a real portal: people
are made at their first sign-in with the roles of their groups, lose a role with its group at
the next sign-in, and are refused (saying why) with no mapped group; a forged state and a
replayed code are refused. And PORTAL_LOCAL_LOGIN=0 keeps passwords for superusers only."""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from tests.support.live import Portal, free_port, running_portal
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider, running_provider

BUTTON = "Sign in with Acme SSO"
ROLE_MAP = {"developers": "developer", "qa-team": "qa", "platform-admins": "admin"}
ACCOUNTS = {
    "alice": {"name": "Alice Liddell", "email": "alice@example.com", "groups": ["developers"]},
    "bob": {"name": "Bob Quinn", "email": "bob@example.com", "groups": ["qa-team", "developers"]},
    "carol": {"name": "Carol Mark", "email": "carol@example.com", "groups": ["marketing"]},
}
# One worker runs the module: each worker would start its own provider and portal (sign_on).
pytestmark = pytest.mark.xdist_group("oidc")


@dataclass(frozen=True)
class SignOn:
    portal: Portal
    provider: Provider


@pytest.fixture(scope="module")
def sign_on(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignOn]:
    folder = tmp_path_factory.mktemp("sso")
    issuer_port = free_port()
    with running_portal(
        folder / "portal-var", PORTAL_OIDC_ISSUER=f"http://127.0.0.1:{issuer_port}",
        PORTAL_OIDC_CLIENT_ID=CLIENT_ID, PORTAL_OIDC_CLIENT_SECRET=CLIENT_SECRET,
        PORTAL_OIDC_ROLE_MAP=json.dumps(ROLE_MAP), PORTAL_OIDC_NAME="Acme SSO",
        PORTAL_OIDC_SCOPES="openid email profile groups", PORTAL_LOCAL_LOGIN="0",
    ) as portal, running_provider(
        folder / "provider", issuer_port, portal.url + "/accounts/oidc/callback/", ACCOUNTS,
    ) as provider:
        yield SignOn(portal, provider)


@pytest.fixture
def accounts(sign_on: SignOn) -> Iterator[Provider]:
    """The provider's accounts, as ACCOUNTS again after the test."""
    yield sign_on.provider
    sign_on.provider.set_accounts(ACCOUNTS)


@pytest.fixture
def new_page(browser):
    """A page of a new browser context: its own cookies at the portal and the provider."""
    return lambda: browser.new_context(viewport={"width": 1280, "height": 900}).new_page()


def sign_in(page, sign_on: SignOn, login: str) -> str:
    """Through the portal's button and the provider's own login and consent pages; returns the
    callback URL the provider sent the browser to (its code and state)."""
    from playwright.sync_api import expect

    callbacks: list[str] = []
    page.on("request", lambda request: callbacks.append(request.url)
            if "/accounts/oidc/callback/" in request.url else None)
    page.goto(sign_on.portal.url + "/")
    page.get_by_role("link", name=BUTTON).click()
    expect(page).to_have_url(re.compile(re.escape(sign_on.provider.issuer)))
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "whatever the provider asks")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()  # the provider's consent page
    page.wait_for_url(re.compile(re.escape(sign_on.portal.url)))
    return callbacks[-1]


def shown_roles(page) -> list[str]:
    return page.locator(".who .role").all_inner_texts()


def sign_out(page) -> None:
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile("/accounts/login/"))


def signed_in_as(sign_on: SignOn, username: str) -> dict:
    """The portal's record of the person: roles, staff, and where the roles came from."""
    code = (
        "import json; from django.contrib.auth.models import User; "
        f"u = User.objects.get(username={username!r}); i = u.sso_identity; "
        "print(json.dumps({'roles': sorted(u.groups.values_list('name', flat=True)), "
        "'staff': u.is_staff, 'sources': i.roles, 'groups': i.groups, "
        "'usable_password': u.has_usable_password()}))"
    )
    return json.loads(sign_on.portal.manage("shell", "-c", code).strip().splitlines()[-1])



@pytest.mark.browser
def test_a_user_signs_in_on_the_providers_page_and_lands_on_the_dashboard_with_their_role(
        sign_on, new_page):
    page = new_page()
    sign_in(page, sign_on, "alice")

    assert urlsplit(page.url).path == "/"
    assert page.locator(".who span").first.inner_text() == "alice"
    assert shown_roles(page) == ["developer"]
    assert page.get_by_role("navigation").get_by_role("link", name="Launch preview").is_visible()
    assert signed_in_as(sign_on, "alice") == {
        "roles": ["developer"], "staff": False, "sources": {"developer": ["developers"]},
        "groups": ["developers"], "usable_password": False}


@pytest.mark.browser
def test_a_role_is_lost_at_the_next_sign_in_after_leaving_its_group(sign_on, accounts, new_page):
    page = new_page()
    sign_in(page, sign_on, "bob")
    assert shown_roles(page) == ["developer", "qa"]
    sign_out(page)

    accounts.set_accounts(ACCOUNTS | {"bob": ACCOUNTS["bob"] | {"groups": ["qa-team"]}})
    page = new_page()
    sign_in(page, sign_on, "bob")
    assert shown_roles(page) == ["qa"]
    accounts.set_accounts(ACCOUNTS | {"bob": ACCOUNTS["bob"] | {"groups": ["platform-admins"]}})
    page = new_page()
    sign_in(page, sign_on, "bob")

    assert shown_roles(page) == ["admin"]
    assert page.get_by_role("navigation").get_by_role("link", name="Admin").is_visible()
    assert signed_in_as(sign_on, "bob") == {
        "roles": ["admin"], "staff": True, "sources": {"admin": ["platform-admins"]},
        "groups": ["platform-admins"], "usable_password": False}


@pytest.mark.browser
def test_a_user_of_no_mapped_group_is_refused_with_a_page_that_says_why(sign_on, new_page):
    page = new_page()
    responses = []
    page.on("response", lambda r: responses.append(r.status)
            if "/accounts/oidc/callback/" in r.url else None)

    sign_in(page, sign_on, "carol")

    assert responses == [403]
    assert page.get_by_role("heading", name="Sign-in refused").is_visible()
    reason = page.get_by_role("alert").inner_text()
    assert "none of your groups gives a role" in reason
    assert "Your groups: marketing." in reason
    assert "developers (developer)" in reason
    page.goto(sign_on.portal.url + "/")
    assert urlsplit(page.url).path == "/accounts/login/"  # not signed in
    assert "carol" not in sign_on.portal.manage(
        "shell", "-c", "from django.contrib.auth.models import User; "
        "print(list(User.objects.values_list('username', flat=True)))")


def provider_answer(sign_on: SignOn, login: str) -> tuple[requests.Session, str]:
    """A sign-in started at the portal and answered by the provider over plain HTTP (its own
    login and consent forms posted as a browser posts them), stopped before the portal gets
    the answer: (the session that started it, the callback URL with its code and state)."""
    http = requests.Session()
    login_page = http.get(sign_on.portal.url + "/accounts/oidc/start/")
    consent_page = http.post(login_page.url,
                             data={"prompt": "login", "login": login, "password": "pw"})
    response = http.post(consent_page.url, data={"prompt": "consent"}, allow_redirects=False)
    while response.is_redirect:
        location = urljoin(response.url, response.headers["Location"])
        if location.startswith(sign_on.portal.url):
            return http, location
        response = http.get(location, allow_redirects=False)
    raise AssertionError(f"the provider did not answer: {response.status_code} {response.text}")


@pytest.mark.browser
def test_an_answer_to_someone_elses_sign_in_is_refused_as_a_forged_state(sign_on, new_page):
    page = new_page()
    page.goto(sign_on.portal.url + "/")
    page.get_by_role("link", name=BUTTON).click()  # this browser's sign-in, at the login page
    # Someone else's code and state (alice's), slipped to this browser: a login CSRF.
    _, forged = provider_answer(sign_on, "alice")

    page.goto(forged)

    assert page.get_by_role("heading", name="Sign-in refused").is_visible()
    assert "does not belong to a sign-in started in this browser" in page.get_by_role(
        "alert").inner_text()
    page.goto(sign_on.portal.url + "/")
    assert urlsplit(page.url).path == "/accounts/login/"


@pytest.mark.browser
def test_a_used_answer_is_refused_when_replayed(sign_on, new_page):
    page = new_page()
    used = sign_in(page, sign_on, "alice")

    page.goto(used)
    other_browser = new_page()
    other_browser.goto(used)

    assert "was used already" in page.get_by_role("alert").inner_text()
    assert "No sign-in was started in this browser" in other_browser.get_by_role(
        "alert").inner_text()
    other_browser.goto(sign_on.portal.url + "/")
    assert urlsplit(other_browser.url).path == "/accounts/login/"


def test_a_used_code_under_a_new_sign_ins_state_is_refused_by_the_provider(sign_on):
    http, fresh = provider_answer(sign_on, "alice")
    first = http.get(fresh, allow_redirects=False)
    assert first.status_code == 302  # signed in: the code is used
    http, fresh = provider_answer(sign_on, "alice")
    old_code = parse_qs(urlsplit(first.url).query)["code"][0]
    query = parse_qs(urlsplit(fresh).query) | {"code": [old_code]}

    replayed = http.get(fresh.split("?")[0] + "?" + urlencode(query, doseq=True))

    assert replayed.status_code == 400
    assert "invalid_grant" in replayed.text
    assert urlsplit(http.get(sign_on.portal.url + "/").url).path == "/accounts/login/"


@pytest.mark.browser
def test_the_login_page_offers_the_provider_first_and_passwords_to_superusers_only(
        sign_on, new_page):
    page = new_page()
    page.goto(sign_on.portal.url + "/accounts/login/")
    first = page.locator(".sign-in a.button, .sign-in button").first
    assert first.inner_text() == BUTTON

    page.get_by_text("Break-glass sign-in").click()
    page.fill("#id_username", "admin")
    page.fill("#id_password", sign_on.portal.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(sign_on.portal.url + "/")
    assert shown_roles(page) == ["admin", "developer", "qa"]


@pytest.mark.django_db
def test_with_local_login_off_a_password_signs_in_a_superuser_only(settings):
    settings.PORTAL_OIDC_ISSUER = "http://127.0.0.1:9"
    settings.PORTAL_LOCAL_LOGIN = False
    User.objects.create_user("dev", password="pw-dev", is_staff=True)
    User.objects.create_superuser("root", password="pw-root")

    developer = Client().post(reverse("login"), {"username": "dev", "password": "pw-dev"})
    at_the_admin = Client().post(reverse("admin:login"),
                                 {"username": "dev", "password": "pw-dev"})
    superuser = Client().post(reverse("login"), {"username": "root", "password": "pw-root"})

    assert developer.status_code == 200
    assert "Password sign-in is switched off" in developer.content.decode()
    assert "Password sign-in is switched off" in at_the_admin.content.decode()
    assert superuser.status_code == 302
