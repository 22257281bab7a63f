interface InputProps {
  type?: 'text' | 'email' | 'password';
  autoComplete?: string;
  autoCapitalize?: 'none' | 'off' | 'sentences';
  spellcheck?: boolean;
  maxLength?: number;
}

interface TextFieldProps extends InputProps {
  id: string;
  label: string;
  value: string;
  onValue: (value: string) => void;
  error?: string | undefined;
  hint?: string | undefined;
}

/** A labelled input with its hint and its error next to it, both tied to it for screen readers. */
export function TextField({ id, label, value, onValue, error, hint, type = 'text', ...input }: TextFieldProps) {
  const describedBy = [hint ? `${id}-hint` : '', error ? `${id}-error` : ''].filter(Boolean).join(' ');
  return (
    <div class={error ? 'field has-error' : 'field'}>
      <label for={id}>{label}</label>
      {hint && (
        <p id={`${id}-hint`} class="hint">
          {hint}
        </p>
      )}
      <input
        {...input}
        type={type as 'text'}
        id={id}
        value={value}
        onInput={(event) => onValue(event.currentTarget.value)}
        aria-invalid={error ? 'true' : undefined}
        aria-describedby={describedBy || undefined}
      />
      <FieldError id={`${id}-error`} message={error} />
    </div>
  );
}

export function FieldError({ id, message }: { id: string; message?: string | undefined }) {
  if (!message) {
    return null;
  }
  return (
    <p id={id} class="field-error">
      <span class="field-error-icon" aria-hidden="true">
        !
      </span>
      {sentence(message)}
    </p>
  );
}

/** A form's error that belongs to no single field. */
export function FormError({ message }: { message: string | null }) {
  if (!message) {
    return null;
  }
  return (
    <p class="form-error" role="alert" tabIndex={-1}>
      {message}
    </p>
  );
}

/** The API words its messages in lower case ("must be 8-128 characters"). */
function sentence(message: string): string {
  return message.charAt(0).toUpperCase() + message.slice(1);
}
