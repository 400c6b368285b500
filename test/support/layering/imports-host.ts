// Reaches into host/: the device bundle build must refuse it.
export { generateKey } from '../../../host/keys.js';
