import { useRef, useState } from 'preact/hooks';
import { api, ApiError, session } from '../api';
import { FormError, TextField } from '../components/Field';
import { focusFirstInvalid, useDocumentTitle } from '../lib/dom';
import { describeError, noteLimits } from '../messages';
import { Link, navigate, safeNext, useLocation } from '../router';

type Mode = 'login' | 'signup';
type Fields = 'username' | 'email' | 'password';

const kTaken: Record<string, [Fields, string]> = {
  username_taken: ['username', 'This username is taken.'],
  email_taken: ['email', 'An account with this email exists. Log in instead?'],
};

/** Log in or sign up; the API's field errors appear next to their fields. */
export function AuthScreen({ mode }: { mode: Mode }) {
  const { query } = useLocation();
  const next = safeNext(query.get('next'));
  const [values, setValues] = useState<Record<Fields, string>>({ username: '', email: '', password: '' });
  const [errors, setErrors] = useState<Partial<Record<Fields, string>>>({});
  const [formError, setFormError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const form = useRef<HTMLFormElement>(null);
  const signup = mode === 'signup';
  useDocumentTitle(signup ? 'Sign up' : 'Log in');

  const set = (field: Fields) => (value: string) => setValues((v) => ({ ...v, [field]: value }));

  async function submit(event: Event) {
    event.preventDefault();
    if (busy) {
      return;
    }
    setBusy(true);
    setErrors({});
    setFormError(null);
    try {
      const result = signup
        ? await api.register(values)
        : await api.login({ email: values.email, password: values.password });
      session.set(result);
      navigate(next, { replace: true });
    } catch (error) {
      noteLimits(error);
      const fieldErrors: Partial<Record<Fields, string>> = {};
      let rest: string | null = null;
      if (error instanceof ApiError && error.code === 'validation_failed') {
        for (const [field, message] of Object.entries(error.fieldErrors())) {
          if (field === 'username' || field === 'email' || field === 'password') {
            fieldErrors[field] = message;
          } else {
            rest = message;
          }
        }
        rest ??= Object.keys(fieldErrors).length ? null : error.message;
      } else if (error instanceof ApiError && kTaken[error.code]) {
        const [field, message] = kTaken[error.code]!;
        fieldErrors[field] = message;
      } else if (error instanceof ApiError && error.code === 'invalid_credentials') {
        rest = 'Wrong email or password.';
      } else {
        rest = describeError(error);
      }
      setErrors(fieldErrors);
      setFormError(rest);
      focusFirstInvalid(form.current);
    } finally {
      setBusy(false);
    }
  }

  const other = signup ? '/login' : '/signup';
  const otherHref = next === '/' ? other : `${other}?next=${encodeURIComponent(next)}`;
  return (
    <section class="screen auth" aria-labelledby="auth-title">
      <div class="auth-intro">
        <h1 id="auth-title" tabIndex={-1}>
          {signup ? 'Create your account' : 'Log in'}
        </h1>
        <p class="lead">Vote on one poll after another, or skip. Results update live.</p>
      </div>
      <form ref={form} class="card form" noValidate onSubmit={submit}>
        <FormError message={formError} />
        {signup && (
          <TextField
            id="username"
            label="Username"
            hint="3-32 letters, digits or _"
            autoComplete="username"
            autoCapitalize="none"
            spellcheck={false}
            value={values.username}
            onValue={set('username')}
            error={errors.username}
          />
        )}
        <TextField
          id="email"
          label="Email"
          type="email"
          autoComplete="email"
          autoCapitalize="none"
          spellcheck={false}
          value={values.email}
          onValue={set('email')}
          error={errors.email}
        />
        <TextField
          id="password"
          label="Password"
          type="password"
          hint={signup ? 'At least 8 characters' : undefined}
          autoComplete={signup ? 'new-password' : 'current-password'}
          value={values.password}
          onValue={set('password')}
          error={errors.password}
        />
        <button type="submit" class="button primary wide" aria-disabled={busy ? 'true' : undefined}>
          {busy ? (signup ? 'Creating account…' : 'Logging in…') : signup ? 'Sign up' : 'Log in'}
        </button>
        <p class="switch">
          {signup ? 'Have an account? ' : 'New here? '}
          <Link href={otherHref}>{signup ? 'Log in' : 'Create an account'}</Link>
        </p>
      </form>
    </section>
  );
}
