// Plain HTML pages for the test provider. They load nothing from anywhere (no fonts, no
// scripts, no images), so they render instantly on a machine without internet access.

export function esc(value) {
  return String(value ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

const STYLE = 'body{font-family:sans-serif;max-width:28em;margin:2em auto;padding:0 1em}'
  + 'label{display:block;margin:.6em 0 .2em}input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.4em}'
  + 'button{margin:.8em .4em 0 0;padding:.4em 1.2em}.error{color:#b00020}form.inline{display:inline}';

export function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${esc(title)}</h1>
${body}
</body>
</html>
`;
}

// The login form. Inputs are named "login" and "password"; the submit button is the only
// button of the form. Cancelling is a separate form so that form-filling helpers that submit
// "the form with a password input" never hit it by accident.
export function loginPage({ action, abortAction, clientId, login = '', error }) {
  return page('Sign in', `
<p>Sign in to continue to <strong id="client">${esc(clientId)}</strong>.</p>
${error ? `<p class="error" id="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="${esc(action)}" id="login-form" autocomplete="off">
<label for="login">Username</label>
<input type="text" id="login" name="login" value="${esc(login)}" autofocus required>
<label for="password">Password</label>
<input type="password" id="password" name="password" required>
<button type="submit" id="submit">Sign in</button>
</form>
<form method="post" action="${esc(abortAction)}" id="abort-form" class="inline">
<button type="submit" id="abort" name="abort" value="yes">Cancel</button>
</form>`);
}

// RP-initiated logout confirmation. oidc-provider hands us the form element (with the hidden
// xsrf input); the buttons are added inside it.
export function logoutPage({ formHtml, host }) {
  const buttons = '<p>Do you want to sign out?</p>'
    + '<button type="submit" id="logout-yes" name="logout" value="yes">Yes, sign me out</button>'
    + '<button type="submit" id="logout-no">No, stay signed in</button>';
  const form = formHtml.replace(/<\/form>\s*$/, `${buttons}</form>`);
  return page('Sign out', `<p>Signing out of <strong>${esc(host)}</strong>.</p>\n${form}`);
}

export function logoutSuccessPage({ clientId }) {
  return page('Signed out', `<p id="signed-out">You have been signed out${clientId ? ` of <strong>${esc(clientId)}</strong>` : ''}.</p>`);
}

// Only the error code and its description are shown: never request parameters, tokens or state.
export function errorPage({ error, description }) {
  return page('Error', `<p class="error" id="error-code">${esc(error)}</p>${description ? `<p id="error-description">${esc(description)}</p>` : ''}`);
}
